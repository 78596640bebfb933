package report

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"

	"cacheclip/eval/bootstrap"
)

// Average is a run averaged over the tasks where it and full both ran: its
// mean score, its mean score as a percentage of full's, and its mean
// difference from another run (B) on the same questions. Every interval is a
// 95% stratified bootstrap (each task's questions redrawn on their own).
type Average struct {
	A             Row // the first task's row of the run (names the method and ratio)
	B             *Row
	Tasks         []string
	Score, Lo, Hi float64 // mean over tasks (×100); with B: mean A − B
	OfFull        float64 // mean over tasks of A's score as a % of full's (NaN with B)
	OfLo, OfHi    float64
}

// Verdict says what the interval of a difference allows.
func (a Average) Verdict() string {
	if a.B == nil {
		return ""
	}
	return Difference{A: a.A, B: *a.B, Lo: a.Lo, Hi: a.Hi}.Verdict()
}

// runKey names a run across tasks: its variant and ratio.
func runKey(r Row) string { return RunLabel(r) }

// Averages averages every ratio-taking run over the tasks where it and full
// both have per-question scores and full scored above 0 (a share of zero
// says nothing), then pairs it, over the same tasks, with each ratio-free run
// and each later run at its ratio, as Differences does within a task.
func Averages(rows []Row, seed uint64) []Average {
	byTask := map[string]map[string]Row{}
	var keys []string
	seenKey := map[string]bool{}
	for _, r := range rows {
		if r.PerQuestion == nil {
			continue
		}
		if byTask[r.Task] == nil {
			byTask[r.Task] = map[string]Row{}
		}
		byTask[r.Task][runKey(r)] = r
		if !seenKey[runKey(r)] {
			seenKey[runKey(r)] = true
			keys = append(keys, runKey(r))
		}
	}
	order := tasks(rows)
	// tasksOf lists the tasks where every named run and full have scores.
	tasksOf := func(names ...string) []string {
		var out []string
		for _, t := range order {
			m := byTask[t]
			f, ok := m[Baseline]
			if !ok || f.Score == 0 {
				continue
			}
			all := true
			for _, n := range names {
				r, ok := m[n]
				all = all && ok && len(r.PerQuestion) == len(f.PerQuestion)
			}
			if all {
				out = append(out, t)
			}
		}
		return out
	}
	var out []Average
	for i, ka := range keys {
		first := firstRow(rows, ka)
		if first.RatioFree {
			continue
		}
		ts := tasksOf(ka)
		if len(ts) == 0 {
			continue
		}
		sizes := make([]int, len(ts))
		a, full := make([][]float64, len(ts)), make([][]float64, len(ts))
		var score, ofFull float64
		for j, t := range ts {
			a[j], full[j] = byTask[t][ka].PerQuestion, byTask[t][Baseline].PerQuestion
			sizes[j] = len(a[j])
			score += byTask[t][ka].Score / float64(len(ts))
			ofFull += OfFull(byTask[t][ka].Score, byTask[t][Baseline].Score) / float64(len(ts))
		}
		lo, hi := bootstrap.Stratified(sizes, meanOfMeans(a), 0.95, bootstrap.Resamples, seed)
		olo, ohi := bootstrap.Stratified(sizes, func(idx [][]int) float64 {
			s := 0.0
			for j := range idx {
				f := mean(full[j], idx[j])
				if f == 0 {
					return math.NaN()
				}
				s += 100 * mean(a[j], idx[j]) / f
			}
			return s / float64(len(idx))
		}, 0.95, bootstrap.Resamples, seed)
		out = append(out, Average{A: first, Tasks: ts, Score: score, Lo: lo, Hi: hi, OfFull: ofFull, OfLo: olo, OfHi: ohi})
		for j, kb := range keys {
			b := firstRow(rows, kb)
			if j == i || !b.RatioFree && (b.Ratio != first.Ratio || j < i) {
				continue
			}
			ts := tasksOf(ka, kb)
			if len(ts) == 0 {
				continue
			}
			sizes := make([]int, len(ts))
			d := make([][]float64, len(ts))
			var diff float64
			for k, t := range ts {
				ra, rb := byTask[t][ka], byTask[t][kb]
				d[k] = make([]float64, len(ra.PerQuestion))
				for q := range d[k] {
					d[k][q] = ra.PerQuestion[q] - rb.PerQuestion[q]
				}
				sizes[k] = len(d[k])
				diff += (ra.Score - rb.Score) / float64(len(ts))
			}
			lo, hi := bootstrap.Stratified(sizes, meanOfMeans(d), 0.95, bootstrap.Resamples, seed)
			out = append(out, Average{A: first, B: &b, Tasks: ts, Score: diff, Lo: lo, Hi: hi, OfFull: math.NaN(), OfLo: math.NaN(), OfHi: math.NaN()})
		}
	}
	return out
}

// mean of xs at the resampled indices idx.
func mean(xs []float64, idx []int) float64 {
	s := 0.0
	for _, i := range idx {
		s += xs[i]
	}
	return s / float64(len(idx))
}

// meanOfMeans is the bootstrap statistic ×100 of per-task scores xs[task]
// [question]: the mean over tasks of each task's resampled mean.
func meanOfMeans(xs [][]float64) func(idx [][]int) float64 {
	return func(idx [][]int) float64 {
		s := 0.0
		for j := range idx {
			s += mean(xs[j], idx[j])
		}
		return 100 * s / float64(len(idx))
	}
}

func firstRow(rows []Row, key string) Row {
	for _, r := range rows {
		if runKey(r) == key {
			return r
		}
	}
	return Row{}
}

// OfTasks keeps the rows of the named tasks.
func OfTasks(rows []Row, names []string) []Row {
	var out []Row
	for _, r := range rows {
		if slices.Contains(names, r.Task) {
			out = append(out, r)
		}
	}
	return out
}

// AveragesMarkdown writes the averages over tasks: each run's mean score and
// % of full, then the mean differences (nothing without any). over names the
// tasks in the headings ("tasks" for all of them).
func AveragesMarkdown(w io.Writer, avs []Average, over string) error {
	var runs, diffs []Average
	for _, a := range avs {
		if a.B == nil {
			runs = append(runs, a)
		} else {
			diffs = append(diffs, a)
		}
	}
	if err := section(w, len(runs), "Averaged over "+over, "Each run's score and its score as a % of full's, averaged over the tasks "+
		"where full scored above 0, with the 95% interval of a stratified bootstrap (each task's questions redrawn on their own).",
		[]string{"ratio", "method", "tasks", "mean score", "95% interval", "mean % of full", "95% interval"}, func(b *bytes.Buffer, i int) {
			a := runs[i]
			fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %s | %s |\n", RatioLabel(a.A), mdCell(a.A.Method), len(a.Tasks), num(a.Score, 1), interval(a.Lo, a.Hi),
				num(a.OfFull, 1), interval(a.OfLo, a.OfHi))
		}); err != nil {
		return err
	}
	return section(w, len(diffs), "Differences averaged over "+over, "Mean over tasks of A's score minus B's on the same questions, "+
		"with the 95% interval of the stratified paired bootstrap; stated only where the interval leaves out 0.",
		[]string{"ratio", "A", "B", "tasks", "mean A − B", "95% interval", "verdict"}, func(b *bytes.Buffer, i int) {
			a := diffs[i]
			fmt.Fprintf(b, "| %s | %s | %s | %d | %s | %s | %s |\n", RatioLabel(a.A), mdCell(a.A.Method), mdCell(RunLabel(*a.B)),
				len(a.Tasks), signed(a.Score), interval(a.Lo, a.Hi), mdCell(a.Verdict()))
		})
}
