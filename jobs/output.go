package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/zeebo/xxh3"
)

// OutputColumns returns the fixed output columns, in order (docs/JOBS.md, Output layout);
// passthrough columns follow them, then DiagnosticColumns when the job asks
// for diagnostics.
func OutputColumns() []string { return slices.Clone(outputColumns) }

// DiagnosticColumns returns the columns OutputOptions.Diagnostics appends
// after the passthrough columns. They come last so that turning them on does
// not move the passthrough columns, whose indices the questions reader assigns
// from len(OutputColumns()).
func DiagnosticColumns() []string { return slices.Clone(diagnosticColumns) }

var diagnosticColumns = []string{"answer_token_ids", "first_token_logprobs"}

// LabelColumns returns the columns a label job appends last (after the
// diagnostic columns when there are any).
func LabelColumns() []string { return slices.Clone(labelColumns) }

var labelColumns = []string{"label", "label_logprobs", "label_probs", "label_margin"}

var outputColumns = []string{
	"query_id", "answer", "status", "error", "method", "recompute_ratio", "requested_ratio",
	"n_context_tokens", "n_recomputed", "n_generated",
	"load_ms", "aux_ms", "prefill_ms", "ttft_ms", "decode_ms", "total_ms",
	"device",
}

// Status of an output row.
type Status string

const (
	StatusOK    Status = "ok"
	StatusError Status = "error"
)

// Result is one output row. Answer is written as null for error rows and
// Error as null for ok rows.
type Result struct {
	QueryID string
	Answer  string
	Status  Status
	Error   string
	Method  string
	// RequestedRatio is the job's ratio for a method that takes one, nil
	// (written as null) for the others. What was recomputed, recompute_ratio,
	// is derived from NRecomputed and NContextTokens when the row is written,
	// so it cannot disagree with them.
	RequestedRatio *float64
	NContextTokens int32
	NRecomputed    int32
	NGenerated     int32
	LoadMS         float64
	AuxMS          float64
	PrefillMS      float64
	TTFTMS         float64
	DecodeMS       float64
	TotalMS        float64
	// Device is where the primary model ran: "cpu" or "cuda:N (name)".
	Device string
	// Passthrough is Question.Passthrough, unchanged.
	Passthrough parquet.Row
	// AnswerIDs are the generated token ids behind Answer (the stop token
	// excluded, as from the text) and FirstLogProbs the natural-log softmax over
	// the whole vocabulary of the logits that predicted the first of them. They
	// are written only with OutputOptions.Diagnostics; nil is an empty list.
	AnswerIDs     []int32
	FirstLogProbs []float32
	// Label job results (OutputOptions.Label): the best label (also in
	// Answer), each label's score and softmax probability aligned with the
	// row's labels, and the best score minus the second (NaN: null).
	Label         string
	LabelLogProbs []float64
	LabelProbs    []float64
	LabelMargin   float64
}

// ErrorResult is the status=error row for a question that failed with err.
func ErrorResult(q *Question, method string, requested *float64, err error) Result {
	return Result{QueryID: q.QueryID, Status: StatusError, Error: err.Error(),
		Method: method, RequestedRatio: requested, Passthrough: q.Passthrough}
}

// RecomputeRatio is the share of the context recomputed:
// NRecomputed / NContextTokens, 0 without context (and for error rows, which
// recomputed nothing).
func (r *Result) RecomputeRatio() float64 {
	if r.NContextTokens <= 0 {
		return 0
	}
	return float64(r.NRecomputed) / float64(r.NContextTokens)
}

// File names inside an output directory.
const (
	SuccessFile    = "_SUCCESS"
	StatsFile      = "stats.json"
	manifestFormat = "cacheclip-output/1"
)

// ManifestName, PartName and PartitionStatsName give a shard's file names; the
// shard tag in every name keeps N concurrent writers on disjoint files.
func ManifestName(s Partition) string       { return "_manifest-" + s.norm().Tag() + ".json" }
func PartitionStatsName(s Partition) string { return "_stats-" + s.norm().Tag() + ".json" }
func PartName(s Partition, seq int) string {
	return fmt.Sprintf("part-%s-%06d.parquet", s.norm().Tag(), seq)
}

var (
	manifestRE = regexp.MustCompile(`^_manifest-s(\d{4})of(\d{4})\.json$`)
	partRE     = regexp.MustCompile(`^part-(s\d{4}of\d{4})-(\d{6,})\.parquet$`)
)

// Manifest is a shard's record of its committed parts, rewritten atomically
// after each part is renamed into place: a part is committed once it is listed.
type Manifest struct {
	Format    string     `json:"format"`
	Partition string     `json:"shard"`
	Schema    string     `json:"schema"` // the part files' Parquet schema
	Parts     []PartInfo `json:"parts"`
	Complete  bool       `json:"complete"` // the shard has read all its input
	Stats     Stats      `json:"stats"`    // cumulative over the parts listed
	// MaxErrors is the error budget the shard's rows are judged against,
	// across all runs; BudgetChanges records every run that changed it.
	MaxErrors     string         `json:"max_errors,omitempty"`
	BudgetChanges []BudgetChange `json:"budget_changes,omitempty"`
}

// BudgetChange is one explicit change of a dataset's error budget on a rerun.
type BudgetChange struct {
	From string    `json:"from"`
	To   string    `json:"to"`
	At   time.Time `json:"at"`
	By   string    `json:"by"` // the process that changed it
}

// PartInfo is one committed part file.
type PartInfo struct {
	File      string    `json:"file"`
	Rows      int64     `json:"rows"`
	Bytes     int64     `json:"bytes"`
	Committed time.Time `json:"committed"`
}

// OutputOptions configure OpenOutput.
type OutputOptions struct {
	Dir         string
	Partition   Partition
	Passthrough []parquet.Field // QuestionsReader.PassthroughFields()
	PartRows    int             // rows per part (default 1000)
	// CommitInterval bounds how long an answered row stays uncommitted (0 =
	// by rows only): a timer commits the pending rows this long after the
	// oldest of them arrived, so a kill loses at most this much work.
	CommitInterval time.Duration
	// MaxErrors is the error budget. The first run records it in the
	// manifest; a rerun keeps the recorded budget unless MaxErrorsGiven (the
	// user set it explicitly), in which case a change is logged and recorded.
	// nil: the job default (DefaultSpec).
	MaxErrors      *ErrorBudget
	MaxErrorsGiven bool
	// LeaseTimeout is how long this writer's lease outlives its last
	// heartbeat (default DefaultLeaseTimeout).
	LeaseTimeout time.Duration
	Diagnostics  bool         // append the DiagnosticColumns (Result.AnswerIDs, Result.FirstLogProbs)
	Label        bool         // a label job: append the LabelColumns
	Logger       *slog.Logger // default slog.Default()
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Output writes one shard of an output dataset. Its methods may be called from
// several goroutines.
type Output struct {
	mu        sync.Mutex
	opts      OutputOptions
	partition Partition
	schema    *parquet.Schema
	nPass     int
	log       *slog.Logger
	manifest  Manifest
	committed map[xxh3.Uint128]struct{}
	nextSeq   int

	pending      []parquet.Row
	pendingStats Stats
	lastCommit   time.Time
	started      time.Time
	baseWall     float64 // wall seconds of earlier runs
	baseRuns     int
	baseBusy     map[string]float64
	baseCounters map[string]int64
	baseDevice   string
	runDevice    string
	runBusy      map[string]float64
	runCounters  map[string]int64
	duplicates   int64
	closed       bool
	budget       ErrorBudget
	lease        *Lease
	timer        *time.Timer // commits pending rows CommitInterval after the first
	timerErr     error       // a failed timed commit, returned by the next call
}

// OutputSchema is the Parquet schema of the part files for the given
// passthrough columns, with the DiagnosticColumns after them when diagnostics
// is set.
func OutputSchema(pass []parquet.Field, diagnostics bool) *parquet.Schema {
	return outputSchema(pass, diagnostics, false)
}

// LabelOutputSchema is OutputSchema with a label job's LabelColumns last.
func LabelOutputSchema(pass []parquet.Field, diagnostics bool) *parquet.Schema {
	return outputSchema(pass, diagnostics, true)
}

func outputSchema(pass []parquet.Field, diagnostics, label bool) *parquet.Schema {
	str := parquet.String()
	fields := []parquet.Field{
		field("query_id", parquet.Required(str)),
		field("answer", parquet.Optional(str)),
		field("status", parquet.Required(str)),
		field("error", parquet.Optional(str)),
		field("method", parquet.Required(str)),
		field("recompute_ratio", parquet.Required(parquet.Leaf(parquet.DoubleType))),
		field("requested_ratio", parquet.Optional(parquet.Leaf(parquet.DoubleType))),
	}
	for _, n := range outputColumns[7:10] {
		fields = append(fields, field(n, parquet.Required(parquet.Leaf(parquet.Int32Type))))
	}
	for _, n := range outputColumns[10:16] {
		fields = append(fields, field(n, parquet.Required(parquet.Leaf(parquet.DoubleType))))
	}
	fields = append(fields, field("device", parquet.Required(str)))
	fields = append(fields, pass...)
	if diagnostics {
		// Plain repeated leaves (no LIST group): one leaf column each, which
		// DuckDB, pyarrow and Spark all read as lists.
		fields = append(fields,
			field(diagnosticColumns[0], parquet.Repeated(parquet.Leaf(parquet.Int32Type))),
			field(diagnosticColumns[1], parquet.Repeated(parquet.Leaf(parquet.FloatType))))
	}
	if label {
		dbl := parquet.Leaf(parquet.DoubleType)
		fields = append(fields,
			field(labelColumns[0], parquet.Optional(str)),
			field(labelColumns[1], parquet.Repeated(dbl)),
			field(labelColumns[2], parquet.Repeated(dbl)),
			field(labelColumns[3], parquet.Optional(dbl)))
	}
	return parquet.NewSchema("cacheclip_output", &orderedGroup{fields: fields})
}

// OpenOutput opens (creating it if needed) the output directory for one shard
// and prepares resume: it reads the shard's manifest and the query_id column
// of its committed parts, removes the shard's stray temporary files and its
// part files that no manifest lists (written but never committed: their rows
// will be recomputed). Errors that the user must fix (a dataset written with a
// different shard count or input schema, a committed part that is gone) are
// ConfigErrors.
func OpenOutput(ctx context.Context, opts OutputOptions) (*Output, error) {
	if opts.Dir == "" {
		return nil, configErr(errors.New("output directory is empty"))
	}
	if opts.PartRows <= 0 {
		opts.PartRows = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sh := opts.Partition.norm()
	if err := sh.Validate(); err != nil {
		return nil, configErr(err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("output dir %s: %w", opts.Dir, err)
	}
	for _, f := range opts.Passthrough {
		if opts.Diagnostics && slices.Contains(diagnosticColumns, f.Name()) {
			return nil, configErr(fmt.Errorf("input column %s is also a diagnostics output column; rename it in the input or run without diagnostics", f.Name()))
		}
		if opts.Label && slices.Contains(labelColumns, f.Name()) {
			return nil, configErr(fmt.Errorf("input column %s is also a label job's output column; rename it in the input", f.Name()))
		}
	}
	o := &Output{opts: opts, partition: sh, log: opts.Logger, committed: map[xxh3.Uint128]struct{}{},
		schema: outputSchema(opts.Passthrough, opts.Diagnostics, opts.Label), nextSeq: 1}
	for _, f := range opts.Passthrough {
		o.nPass += leafCount(f)
	}
	o.manifest = Manifest{Format: manifestFormat, Partition: sh.String(), Schema: o.schema.String()}
	// The lease comes first: recovery deletes uncommitted files, which must
	// never happen under a live writer.
	lease, err := AcquireLease(opts.Dir, sh, opts.LeaseTimeout, o.log)
	if err != nil {
		return nil, err
	}
	o.lease = lease
	if err := o.recover(ctx); err != nil {
		lease.Release()
		return nil, err
	}
	o.budget = o.effectiveBudget()
	o.manifest.MaxErrors = o.budget.String()
	o.started = opts.Now()
	o.lastCommit = o.started
	o.baseWall = o.manifest.Stats.WallSeconds
	o.baseRuns = o.manifest.Stats.Runs
	o.baseBusy = o.manifest.Stats.StageBusySeconds
	o.baseCounters = o.manifest.Stats.Counters
	o.baseDevice = o.manifest.Stats.Device
	o.duplicates = o.manifest.Stats.Duplicates
	return o, nil
}

// effectiveBudget decides the error budget of this run: the dataset's own
// unless the user gave one explicitly (then the change is logged and
// recorded in the manifest with the next commit).
func (o *Output) effectiveBudget() ErrorBudget {
	prev := o.manifest.MaxErrors
	want := DefaultSpec().MaxErrors
	if o.opts.MaxErrors != nil {
		want = *o.opts.MaxErrors
	}
	if prev == "" || prev == want.String() {
		return want
	}
	old, err := ParseErrorBudget(prev)
	if err != nil || o.opts.MaxErrorsGiven {
		o.log.Warn("error budget changed on rerun", "shard", o.partition.String(), "previous_max_errors", prev,
			"effective_max_errors", want.String(), "errors_so_far", o.manifest.Stats.Errors+o.manifest.Stats.Duplicates)
		o.manifest.BudgetChanges = append(slices.Clone(o.manifest.BudgetChanges),
			BudgetChange{From: prev, To: want.String(), At: o.opts.Now().UTC(), By: o.lease.info.ID.String()})
		return want
	}
	o.log.Info("keeping the dataset's error budget (give --max-errors explicitly to change it)", "shard", o.partition.String(),
		"max_errors", prev, "default", want.String())
	return old
}

// Budget is the error budget this run applies (see OutputOptions.MaxErrors).
func (o *Output) Budget() ErrorBudget { return o.budget }

func (o *Output) recover(ctx context.Context) error {
	dir := o.opts.Dir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("output dir %s: %w", dir, err)
	}
	tag := o.partition.Tag()
	for _, e := range entries {
		if m := manifestRE.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[2])
			if n != o.partition.N {
				return configErr(fmt.Errorf("output dir %s holds a dataset written with %d shards (%s); this job has --shard %s: use a new output directory or the same shard count", dir, n, e.Name(), o.partition))
			}
		}
	}
	mpath := filepath.Join(dir, ManifestName(o.partition))
	b, err := os.ReadFile(mpath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("manifest %s: %w", mpath, err)
	default:
		var m Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("manifest %s is unreadable (%v); it is only ever replaced atomically, so the directory was modified by hand", mpath, err)
		}
		if m.Format != manifestFormat {
			return configErr(fmt.Errorf("manifest %s: format %q, want %q", mpath, m.Format, manifestFormat))
		}
		if m.Schema != o.manifest.Schema {
			return configErr(o.schemaMismatch(mpath, m.Schema))
		}
		o.manifest = m
	}
	listed := map[string]bool{}
	for _, p := range o.manifest.Parts {
		listed[p.File] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := o.loadCommittedIDs(filepath.Join(dir, p.File), p.Rows); err != nil {
			return err
		}
		if m := partRE.FindStringSubmatch(p.File); m != nil {
			seq, _ := strconv.Atoi(m[2])
			o.nextSeq = max(o.nextSeq, seq+1)
		}
	}
	for _, e := range entries {
		name := e.Name()
		var why string
		switch {
		case strings.HasPrefix(name, tmpPrefix+tag+"-"):
			why = "temporary file of an interrupted write"
		case partRE.MatchString(name) && partRE.FindStringSubmatch(name)[1] == tag && !listed[name]:
			why = "part not in the manifest (never committed)"
		case strings.HasPrefix(name, tmpPrefix+"final-") || strings.HasPrefix(name, tmpPrefix+"any-") || strings.HasPrefix(name, tmpPrefix+"lease-"):
			// Shared files (stats.json, _SUCCESS, job.effective.yaml) are written
			// by any shard in milliseconds; a temp file of theirs that is old is
			// left by a crash.
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < 10*time.Minute {
				continue
			}
			why = "stale temporary file"
		default:
			continue
		}
		o.log.Info("removing uncommitted file", "file", filepath.Join(dir, name), "reason", why)
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	if len(o.manifest.Parts) > 0 {
		o.log.Info("resuming output", "dir", dir, "shard", o.partition.String(), "parts", len(o.manifest.Parts), "committed_rows", len(o.committed))
	}
	return nil
}

// schemaMismatch explains why a dataset's schema differs from this job's,
// naming the diagnostics setting when flipping it alone would explain it.
func (o *Output) schemaMismatch(mpath, dataset string) error {
	d := o.opts.Diagnostics
	if outputSchema(o.opts.Passthrough, d, !o.opts.Label).String() == dataset {
		was, now := TaskGenerate, TaskLabel
		if !o.opts.Label {
			was, now = now, was
		}
		return fmt.Errorf("manifest %s: the dataset was written by a %s job and this is a %s job; resume with task: %s or use a new output directory", mpath, was, now, was)
	}
	if outputSchema(o.opts.Passthrough, !d, o.opts.Label).String() == dataset {
		was, now := "without", "with"
		if !d {
			was, now = now, was
		}
		return fmt.Errorf("manifest %s: the dataset was written %s diagnostics (columns %s) and this job runs %s them; resume with diagnostics: %v or use a new output directory",
			mpath, was, strings.Join(diagnosticColumns, ", "), now, !d)
	}
	return fmt.Errorf("manifest %s: the dataset's schema differs from this job's (were the questions' passthrough columns or the diagnostics setting changed? this job has diagnostics: %v); resume with the same input columns and diagnostics setting, or use a new output directory\n dataset: %s\n job:     %s",
		mpath, d, dataset, o.manifest.Schema)
}

// loadCommittedIDs reads only the query_id column of a committed part.
func (o *Output) loadCommittedIDs(path string, wantRows int64) (err error) {
	f, pf, guard, err := openParquet(path, "committed part")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return configErr(fmt.Errorf("output %s: the manifest lists %s but it is gone; restore it or start a new output directory", o.opts.Dir, filepath.Base(path)))
		}
		return err
	}
	defer f.Close()
	defer guard.Close()
	if pf.NumRows() != wantRows {
		return fmt.Errorf("committed part %s has %d rows, its manifest says %d", path, pf.NumRows(), wantRows)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("committed part %s: corrupt data: %v", path, p)
		}
	}()
	vals := make([]parquet.Value, 1024)
	for g, rg := range pf.RowGroups() {
		if err := guard.RowGroup(g); err != nil {
			return err
		}
		pages := rg.ColumnChunks()[0].Pages()
		for {
			p, perr := pages.ReadPage()
			if errors.Is(perr, io.EOF) {
				break
			}
			if perr != nil {
				pages.Close()
				return fmt.Errorf("committed part %s: %w", path, perr)
			}
			vr := p.Values()
			for {
				n, verr := vr.ReadValues(vals)
				for _, v := range vals[:n] {
					o.committed[xxh3.Hash128(v.ByteArray())] = struct{}{}
				}
				if errors.Is(verr, io.EOF) {
					break
				}
				if verr != nil {
					parquet.Release(p)
					pages.Close()
					return fmt.Errorf("committed part %s: %w", path, verr)
				}
			}
			parquet.Release(p)
		}
		pages.Close()
	}
	return nil
}

// Committed reports whether queryID is in a committed part (skip it on resume).
func (o *Output) Committed(queryID string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.committed[xxh3.HashString128(queryID)]
	return ok
}

// NumCommitted is the number of committed rows of this shard.
func (o *Output) NumCommitted() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int64(len(o.committed))
}

// Write adds one row; it commits a part when PartRows rows are pending or
// CommitInterval has passed since the last commit.
func (o *Output) Write(ctx context.Context, r Result) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errors.New("output: write after close")
	}
	if err := o.timerErr; err != nil {
		return err
	}
	row, err := o.row(&r)
	if err != nil {
		return err
	}
	o.pending = append(o.pending, row)
	o.pendingStats.addRow(&r)
	if len(o.pending) >= o.opts.PartRows ||
		(o.opts.CommitInterval > 0 && o.opts.Now().Sub(o.lastCommit) >= o.opts.CommitInterval) {
		return o.commitLocked(ctx)
	}
	if len(o.pending) == 1 && o.opts.CommitInterval > 0 {
		o.armTimer()
	}
	return nil
}

// armTimer commits the pending rows CommitInterval from now, so that rows
// answered just before a long pause (a slow batch, a stall) are not left
// uncommitted until the next row arrives.
func (o *Output) armTimer() {
	if o.timer != nil {
		o.timer.Stop()
	}
	o.timer = time.AfterFunc(o.opts.CommitInterval, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.closed || len(o.pending) == 0 || o.timerErr != nil {
			return
		}
		if err := o.commitLocked(context.Background()); err != nil {
			o.timerErr = err
			o.log.Error("timed commit failed", "error", err)
		}
	})
}

func (o *Output) stopTimer() {
	if o.timer != nil {
		o.timer.Stop()
	}
}

func (o *Output) row(r *Result) (parquet.Row, error) {
	if r.QueryID == "" {
		return nil, errors.New("output: result without query_id")
	}
	if r.Status != StatusOK && r.Status != StatusError {
		return nil, fmt.Errorf("output: query_id %q: status %q is not ok or error", r.QueryID, r.Status)
	}
	if o.nPass > 0 {
		cols := map[int]bool{}
		for _, v := range r.Passthrough {
			cols[v.Column()] = true
		}
		if len(cols) != o.nPass {
			return nil, fmt.Errorf("output: query_id %q: passthrough values cover %d of %d columns (pass Question.Passthrough through)", r.QueryID, len(cols), o.nPass)
		}
	}
	str := func(s string, col int) parquet.Value { return parquet.ByteArrayValue([]byte(s)).Level(0, 0, col) }
	opt := func(s string, null bool, col int) parquet.Value {
		if null {
			return parquet.NullValue().Level(0, 0, col)
		}
		return parquet.ByteArrayValue([]byte(s)).Level(0, 1, col)
	}
	dbl := func(x float64, col int) parquet.Value { return parquet.DoubleValue(x).Level(0, 0, col) }
	i32 := func(x int32, col int) parquet.Value { return parquet.Int32Value(x).Level(0, 0, col) }
	optDbl := func(x *float64, col int) parquet.Value {
		if x == nil {
			return parquet.NullValue().Level(0, 0, col)
		}
		return parquet.DoubleValue(*x).Level(0, 1, col)
	}
	n := len(outputColumns) + len(r.Passthrough)
	if o.opts.Diagnostics {
		n += max(1, len(r.AnswerIDs)) + max(1, len(r.FirstLogProbs))
	}
	if o.opts.Label {
		n += 2 + max(1, len(r.LabelLogProbs)) + max(1, len(r.LabelProbs))
	}
	row := make(parquet.Row, 0, n)
	row = append(row,
		str(r.QueryID, 0),
		opt(r.Answer, r.Status != StatusOK, 1),
		str(string(r.Status), 2),
		opt(r.Error, r.Status == StatusOK, 3),
		str(r.Method, 4),
		dbl(r.RecomputeRatio(), 5), optDbl(r.RequestedRatio, 6),
		i32(r.NContextTokens, 7), i32(r.NRecomputed, 8), i32(r.NGenerated, 9),
		dbl(r.LoadMS, 10), dbl(r.AuxMS, 11), dbl(r.PrefillMS, 12),
		dbl(r.TTFTMS, 13), dbl(r.DecodeMS, 14), dbl(r.TotalMS, 15),
		str(r.Device, 16),
	)
	row = append(row, r.Passthrough...)
	if o.opts.Diagnostics {
		// parquet-go wants a row's values ordered by column: fixed, passthrough,
		// then these two, whose leaf indices follow the passthrough leaves.
		col := len(outputColumns) + o.nPass
		row = appendList(row, r.AnswerIDs, col, func(x int32) parquet.Value { return parquet.Int32Value(x) })
		row = appendList(row, r.FirstLogProbs, col+1, func(x float32) parquet.Value { return parquet.FloatValue(x) })
	}
	if o.opts.Label {
		col := len(outputColumns) + o.nPass
		if o.opts.Diagnostics {
			col += len(diagnosticColumns)
		}
		noLabel := r.Status != StatusOK || r.Label == ""
		row = append(row, opt(r.Label, noLabel, col))
		f64 := func(x float64) parquet.Value { return parquet.DoubleValue(x) }
		row = appendList(row, r.LabelLogProbs, col+1, f64)
		row = appendList(row, r.LabelProbs, col+2, f64)
		if noLabel || math.IsNaN(r.LabelMargin) {
			row = append(row, parquet.NullValue().Level(0, 0, col+3))
		} else {
			row = append(row, parquet.DoubleValue(r.LabelMargin).Level(0, 1, col+3))
		}
	}
	return row, nil
}

// appendList appends a repeated leaf column's values for one row: element i
// at repetition level 0 (a new row) for the first and 1 after; an empty list
// is a single null at definition level 0.
func appendList[T any](row parquet.Row, xs []T, col int, val func(T) parquet.Value) parquet.Row {
	if len(xs) == 0 {
		return append(row, parquet.NullValue().Level(0, 0, col))
	}
	for i, x := range xs {
		rep := 1
		if i == 0 {
			rep = 0
		}
		row = append(row, val(x).Level(rep, 1, col))
	}
	return row
}

// Commit writes the pending rows as a part file now (no-op when none).
func (o *Output) Commit(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.commitLocked(ctx)
}

func (o *Output) commitLocked(ctx context.Context) error {
	if len(o.pending) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := o.lease.Check(); err != nil {
		return err
	}
	name := PartName(o.partition, o.nextSeq)
	path := filepath.Join(o.opts.Dir, name)
	var size int64
	// A part is never replaced: were the lease check above wrong (a writer
	// paused between it and here), the rename fails rather than overwrite a
	// part that the new holder committed under the same name.
	err := writeAtomicNew(path, o.partition.Tag(), func(w io.Writer) (err error) {
		defer func() {
			if p := recover(); p != nil { // a malformed passthrough row
				err = fmt.Errorf("encode part: %v", p)
			}
		}()
		pw := parquet.NewWriter(w, o.schema, parquet.Compression(&parquet.Snappy),
			parquet.CreatedBy("cacheclip", "1", ""))
		if _, err := pw.WriteRows(o.pending); err != nil {
			return err
		}
		if err := pw.Close(); err != nil {
			return err
		}
		size = pw.Size()
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit part %s: %w", path, err)
	}
	now := o.opts.Now()
	next := o.manifest
	next.Parts = append(slices.Clone(o.manifest.Parts), PartInfo{File: name, Rows: int64(len(o.pending)), Bytes: size, Committed: now.UTC()})
	next.Stats = o.statsLocked(now, &o.pendingStats)
	if err := o.lease.Check(); err != nil {
		os.Remove(path) // never listed: not committed
		return err
	}
	if err := o.writeManifest(&next); err != nil {
		// The part is on disk but not listed: the next open removes it and the
		// rows are recomputed, so nothing is lost or duplicated.
		return err
	}
	o.manifest = next
	for _, row := range o.pending {
		o.committed[xxh3.Hash128(row[0].ByteArray())] = struct{}{}
	}
	o.nextSeq++
	o.pending = o.pending[:0]
	o.pendingStats = Stats{}
	o.lastCommit = now
	o.log.Debug("committed part", "file", name, "rows", next.Parts[len(next.Parts)-1].Rows)
	return nil
}

// statsLocked is the shard's cumulative stats if extra rows were committed now.
func (o *Output) statsLocked(now time.Time, extra *Stats) Stats {
	s := o.manifest.Stats
	s.TTFTHist.Buckets = cloneMap(s.TTFTHist.Buckets)
	s.TotalHist.Buckets = cloneMap(s.TotalHist.Buckets)
	s.Labels = cloneMap(s.Labels)
	if extra != nil {
		s.addRows(extra)
	}
	s.Partitions = 1
	s.Duplicates = o.duplicates
	s.WallSeconds = o.baseWall + now.Sub(o.started).Seconds()
	if s.FirstStart.IsZero() {
		s.FirstStart = o.started.UTC()
	}
	s.LastEnd = now.UTC()
	s.Runs = o.baseRuns + 1
	s.StageBusySeconds = addMaps(addMaps(nil, o.baseBusy), o.runBusy)
	s.Counters = addMaps(addMaps(nil, o.baseCounters), o.runCounters)
	s.Device = joinDevices(o.baseDevice, o.runDevice)
	s.QuestionsPerSec, s.TokensPerSec = 0, 0
	b := o.budget
	s.MaxErrors = &b
	s.BudgetExceeded = b.Exceeded(s.Errors+s.Duplicates, s.Rows+s.Duplicates)
	s.finish()
	return s
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (o *Output) writeManifest(m *Manifest) error {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	p := filepath.Join(o.opts.Dir, ManifestName(o.partition))
	return writeAtomic(p, o.partition.Tag(), func(w io.Writer) error { _, err := w.Write(b); return err })
}

// SetRunCounters records this run's per-stage busy time and other counters
// (shard cache hits, misses, bytes...) as absolute values for the run so far;
// they are saved with the next commit, added to earlier runs' values.
func (o *Output) SetRunCounters(stageBusy map[string]time.Duration, counters map[string]int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.runBusy = map[string]float64{}
	for k, v := range stageBusy {
		o.runBusy[k] = v.Seconds()
	}
	o.runCounters = cloneMap(counters)
}

// SetDevice records where this run's primary model runs ("cpu", "cuda:0
// (NVIDIA H100 80GB HBM3)"); stats.json lists every device a job's runs used.
func (o *Output) SetDevice(device string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.runDevice = device
}

// SetDuplicates records how many later occurrences of a query_id the reader
// has met (QuestionsReader.Stats().Duplicates). A rerun reads the file again,
// so the largest count seen is kept rather than a sum.
func (o *Output) SetDuplicates(n int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.duplicates = max(o.duplicates, n)
}

// Stats is this shard's cumulative stats including pending rows.
func (o *Output) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.statsLocked(o.opts.Now(), &o.pendingStats)
}

// Finish commits the pending rows, marks the shard complete, writes the
// shard's stats file and, when every shard of the dataset is complete, the
// merged stats.json and _SUCCESS. Call it only after the whole input was read.
func (o *Output) Finish(ctx context.Context) (Stats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stopTimer()
	if err := o.timerErr; err != nil {
		return Stats{}, err
	}
	if err := o.commitLocked(ctx); err != nil {
		return Stats{}, err
	}
	next := o.manifest
	next.Complete = true
	next.Stats = o.statsLocked(o.opts.Now(), nil)
	if err := o.lease.Check(); err != nil {
		return Stats{}, err
	}
	if err := o.writeManifest(&next); err != nil {
		return Stats{}, err
	}
	o.manifest = next
	o.closed = true
	defer o.lease.Release()
	st := next.Stats
	if err := writeJSONAtomic(filepath.Join(o.opts.Dir, PartitionStatsName(o.partition)), o.partition.Tag(), &st); err != nil {
		return st, err
	}
	if _, err := FinalizeDataset(o.opts.Dir); err != nil {
		return st, err
	}
	return st, nil
}

// Close abandons the rows not yet committed (on interrupt or failure). They
// are answered again by the next run. It does not mark the shard complete.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n := len(o.pending); n > 0 && !o.closed {
		o.log.Info("abandoning uncommitted rows", "rows", n)
	}
	o.stopTimer()
	o.pending = nil
	o.closed = true
	o.lease.Release()
	return nil
}

func writeJSONAtomic(path, owner string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeAtomic(path, owner, func(w io.Writer) error { _, err := w.Write(append(b, '\n')); return err })
}

// DatasetStats are the merged stats of an output dataset.
type DatasetStats struct {
	Stats
	PartitionCount     int `json:"shard_count"`     // N of --shard i/N
	PartitionsComplete int `json:"shards_complete"` // shards whose manifest is complete
	// Missing lists the shards that are not complete: never started (no
	// manifest) or not finished.
	Missing  []string `json:"missing_shards,omitempty"`
	Complete bool     `json:"complete"` // every shard complete
	// OverBudget lists the shards whose error rows exceed their budget:
	// the dataset gets no _SUCCESS while any does.
	OverBudget []string `json:"over_budget_shards,omitempty"`
	// Success is Complete with no shard over its budget: _SUCCESS is written.
	Success bool `json:"success"`
}

// MergeStats merges every shard's manifest of the dataset in dir. Percentiles
// come from the merged histograms (exact merge; ±0.5% bucket error).
func MergeStats(dir string) (*DatasetStats, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("output dir: %w", err)
	}
	ds := &DatasetStats{}
	complete := map[int]bool{}
	var names []string
	for _, e := range entries {
		if manifestRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, configErr(fmt.Errorf("output dir %s has no manifest: not a cacheclip output dataset, or nothing committed yet", dir))
	}
	for _, name := range names {
		m := manifestRE.FindStringSubmatch(name)
		i, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		if ds.PartitionCount != 0 && n != ds.PartitionCount {
			return nil, configErr(fmt.Errorf("output dir %s mixes shard counts %d and %d (%s)", dir, ds.PartitionCount, n, name))
		}
		ds.PartitionCount = n
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", name, err)
		}
		var man Manifest
		if err := json.Unmarshal(b, &man); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", filepath.Join(dir, name), err)
		}
		if man.Complete {
			ds.PartitionsComplete++
			complete[i] = true
		}
		st := man.Stats
		if st.BudgetExceeded {
			ds.OverBudget = append(ds.OverBudget, Partition{I: i, N: n}.String())
		}
		ds.mergePartition(&st)
	}
	for i := 0; i < ds.PartitionCount; i++ {
		if !complete[i] {
			ds.Missing = append(ds.Missing, Partition{I: i, N: ds.PartitionCount}.String())
		}
	}
	ds.Complete = ds.PartitionsComplete == ds.PartitionCount
	ds.Success = ds.Complete && len(ds.OverBudget) == 0
	ds.finish()
	return ds, nil
}

// FinalizeDataset merges the shards' stats and, once every shard is complete,
// writes them to stats.json and, when no shard is over its error budget,
// writes _SUCCESS (and removes a _SUCCESS that no longer holds). The last
// shard to finish calls it, and so can a final `cacheclip stats` task; it is
// idempotent, and concurrent calls each write whole files. An incomplete
// dataset gets neither file: stats.json always describes a finished dataset.
func FinalizeDataset(dir string) (*DatasetStats, error) {
	ds, err := MergeStats(dir)
	if err != nil {
		return nil, err
	}
	if !ds.Complete {
		return ds, nil
	}
	if err := writeJSONAtomic(filepath.Join(dir, StatsFile), "final", ds); err != nil {
		return ds, err
	}
	success := filepath.Join(dir, SuccessFile)
	if !ds.Success {
		if err := os.Remove(success); err != nil && !errors.Is(err, os.ErrNotExist) {
			return ds, err
		}
		return ds, nil
	}
	if err := writeFileAtomic(success, nil); err != nil {
		return ds, err
	}
	return ds, nil
}
