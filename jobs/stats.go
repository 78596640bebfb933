package jobs

import (
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// histEps is the relative width of a histogram bucket: percentiles read from
// a Histogram are within ±0.5% of the exact sample percentile.
const histEps = 0.01

// histMin is the smallest value (ms) the histogram resolves; smaller values
// share bucket 0. A microsecond is far below any stage time we measure.
const histMin = 1e-3

// Histogram is a log-bucketed histogram of non-negative values (milliseconds):
// bucket b holds values in [histMin·(1+eps)^b, histMin·(1+eps)^(b+1)). It is
// what a shard stores instead of raw samples: about 2,000 buckets span 1µs to
// 10 hours, it merges exactly across shards and runs, and its JSON stays small.
type Histogram struct {
	Buckets map[int]int64 `json:"buckets"`
	Count   int64         `json:"count"`
	Sum     float64       `json:"sum"`
	Min     float64       `json:"min"`
	Max     float64       `json:"max"`
}

func bucketOf(v float64) int {
	if !(v > histMin) { // also NaN
		return 0
	}
	return int(math.Log(v/histMin) / math.Log1p(histEps))
}

// Add records one value.
func (h *Histogram) Add(v float64) {
	if math.IsNaN(v) || v < 0 {
		v = 0
	}
	if h.Buckets == nil {
		h.Buckets = map[int]int64{}
	}
	h.Buckets[bucketOf(v)]++
	if h.Count == 0 || v < h.Min {
		h.Min = v
	}
	if h.Count == 0 || v > h.Max {
		h.Max = v
	}
	h.Count++
	h.Sum += v
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o Histogram) {
	if o.Count == 0 {
		return
	}
	if h.Buckets == nil {
		h.Buckets = map[int]int64{}
	}
	for b, n := range o.Buckets {
		h.Buckets[b] += n
	}
	if h.Count == 0 || o.Min < h.Min {
		h.Min = o.Min
	}
	if h.Count == 0 || o.Max > h.Max {
		h.Max = o.Max
	}
	h.Count += o.Count
	h.Sum += o.Sum
}

// Quantile returns the q-quantile (0..1) by the nearest-rank rule, to within
// the bucket width; 0 when empty.
func (h *Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.Count)))
	rank = max(1, min(rank, h.Count))
	keys := make([]int, 0, len(h.Buckets))
	for b := range h.Buckets {
		keys = append(keys, b)
	}
	sort.Ints(keys)
	var seen int64
	for _, b := range keys {
		seen += h.Buckets[b]
		if seen >= rank {
			var v float64
			if b > 0 {
				// Geometric middle of the bucket: error at most half its width.
				v = histMin * math.Pow(1+histEps, float64(b)+0.5)
			}
			return min(max(v, h.Min), h.Max)
		}
	}
	return h.Max
}

// Percentiles summarise a latency distribution in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

func (h *Histogram) percentiles() Percentiles {
	p := Percentiles{P50: h.Quantile(0.5), P95: h.Quantile(0.95), P99: h.Quantile(0.99), Max: h.Max}
	if h.Count > 0 {
		p.Mean = h.Sum / float64(h.Count)
	}
	return p
}

// Stats describe a shard's part of the dataset (cumulative over all runs that
// wrote into it) or, merged, the whole dataset. Latency figures cover
// status=ok rows only.
type Stats struct {
	Partitions      int     `json:"shards"`            // shards merged into these figures
	Rows            int64   `json:"rows"`              // committed rows, ok + error
	OK              int64   `json:"ok"`                // status=ok rows
	Errors          int64   `json:"errors"`            // status=error rows
	Duplicates      int64   `json:"duplicates"`        // later occurrences of a query_id, not written
	GeneratedTokens int64   `json:"generated_tokens"`  // Σ n_generated
	ContextTokens   int64   `json:"context_tokens"`    // Σ n_context_tokens
	Recomputed      int64   `json:"recomputed_tokens"` // Σ n_recomputed
	Runs            int     `json:"runs"`              // runs (incl. resumes) that committed rows
	WallSeconds     float64 `json:"wall_s"`            // Σ over shards and runs of time spent running
	// QuestionsPerSec and TokensPerSec are each shard's rows (tokens) over its
	// wall time, summed over shards: the aggregate rate when shards run at once.
	QuestionsPerSec float64   `json:"questions_per_s"`
	TokensPerSec    float64   `json:"generated_tokens_per_s"`
	FirstStart      time.Time `json:"first_start"`
	LastEnd         time.Time `json:"last_end"`

	TTFT  Percentiles `json:"ttft_ms"`
	Total Percentiles `json:"total_ms"`

	// StageBusySeconds is the time spent inside each pipeline stage's function,
	// summed over workers, runs and shards.
	StageBusySeconds map[string]float64 `json:"stage_busy_s,omitempty"`
	// StageOverlap is the stages' busy time summed (the "read" stage, which
	// drives the loop for the whole run, left out) over WallSeconds: the
	// overlap actually achieved. 1 is what running the stages one after
	// another gives; 1.8 means the stages kept 1.8 workers busy on average.
	StageOverlap float64 `json:"stage_overlap,omitempty"`
	// Counters are the runner's other counts (shard cache hits, misses, bytes),
	// summed over runs and shards.
	Counters map[string]int64 `json:"counters,omitempty"`
	// Device is where the primary model ran; runs or shards on different
	// devices are listed sorted, separated by "; ".
	Device string `json:"device,omitempty"`

	// MaxErrors is the error budget a shard's rows are judged against (nil in
	// merged stats: shards judge themselves); BudgetExceeded is whether its
	// errors and duplicates, over all runs, exceed it (merged: any shard's).
	MaxErrors      *ErrorBudget `json:"max_errors,omitempty"`
	BudgetExceeded bool         `json:"budget_exceeded"`

	TTFTHist  Histogram `json:"ttft_hist"`
	TotalHist Histogram `json:"total_hist"`

	// Labels is a label job's distribution of chosen labels over ok rows.
	Labels map[string]int64 `json:"labels,omitempty"`
}

// addRow records one committed result.
func (s *Stats) addRow(r *Result) {
	s.Rows++
	if r.Status == StatusOK {
		s.OK++
		s.TTFTHist.Add(r.TTFTMS)
		s.TotalHist.Add(r.TotalMS)
	} else {
		s.Errors++
	}
	s.GeneratedTokens += int64(r.NGenerated)
	s.ContextTokens += int64(r.NContextTokens)
	s.Recomputed += int64(r.NRecomputed)
	if r.Status == StatusOK && r.Label != "" {
		if s.Labels == nil {
			s.Labels = map[string]int64{}
		}
		s.Labels[r.Label]++
	}
}

// addRows adds o's row figures (not run-level figures) to s.
func (s *Stats) addRows(o *Stats) {
	s.Rows += o.Rows
	s.OK += o.OK
	s.Errors += o.Errors
	s.GeneratedTokens += o.GeneratedTokens
	s.ContextTokens += o.ContextTokens
	s.Recomputed += o.Recomputed
	s.TTFTHist.Merge(o.TTFTHist)
	s.TotalHist.Merge(o.TotalHist)
	s.Labels = addMaps(s.Labels, o.Labels)
}

func addMaps[V int64 | float64](dst map[string]V, src map[string]V) map[string]V {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]V{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// finish derives the rates and percentiles from the raw figures.
func (s *Stats) finish() {
	s.TTFT = s.TTFTHist.percentiles()
	s.Total = s.TotalHist.percentiles()
	s.StageOverlap = 0
	if s.WallSeconds > 0 {
		var busy float64
		for name, v := range s.StageBusySeconds {
			if name != "read" {
				busy += v
			}
		}
		s.StageOverlap = busy / s.WallSeconds
	}
	if s.WallSeconds > 0 && s.QuestionsPerSec == 0 {
		s.QuestionsPerSec = float64(s.Rows) / s.WallSeconds
		s.TokensPerSec = float64(s.GeneratedTokens) / s.WallSeconds
	}
}

// mergePartition adds another shard's (finished) stats to s.
func (s *Stats) mergePartition(o *Stats) {
	s.Partitions += max(o.Partitions, 1)
	s.addRows(o)
	s.Duplicates += o.Duplicates
	s.Runs += o.Runs
	s.WallSeconds += o.WallSeconds
	if o.WallSeconds > 0 {
		s.QuestionsPerSec += float64(o.Rows) / o.WallSeconds
		s.TokensPerSec += float64(o.GeneratedTokens) / o.WallSeconds
	}
	if !o.FirstStart.IsZero() && (s.FirstStart.IsZero() || o.FirstStart.Before(s.FirstStart)) {
		s.FirstStart = o.FirstStart
	}
	if o.LastEnd.After(s.LastEnd) {
		s.LastEnd = o.LastEnd
	}
	s.StageBusySeconds = addMaps(s.StageBusySeconds, o.StageBusySeconds)
	s.Counters = addMaps(s.Counters, o.Counters)
	s.BudgetExceeded = s.BudgetExceeded || o.BudgetExceeded
	s.Device = joinDevices(s.Device, o.Device)
}

// joinDevices merges two Device fields: the sorted set of the devices named.
func joinDevices(a, b string) string {
	var all []string
	for _, s := range []string{a, b} {
		for _, d := range strings.Split(s, "; ") {
			if d != "" && !slices.Contains(all, d) {
				all = append(all, d)
			}
		}
	}
	slices.Sort(all)
	return strings.Join(all, "; ")
}
