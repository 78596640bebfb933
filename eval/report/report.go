// Package report writes the results of `cacheclip eval`: a Markdown table, a
// CSV file, a Parquet file and PNG plots (quality, fidelity to full and time to
// first token against the recompute ratio, one line per method; attention
// agreement between the auxiliary and each primary layer). Every file is written to a temporary
// name and renamed, so a reader never sees a half-written report.
package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"cacheclip/eval/bootstrap"
	"cacheclip/internal/atomicfile"
	"cacheclip/methods"
)

// Row is one (task, method, ratio) run.
type Row struct {
	Task string
	// Method is the method variant's name: the registry name, with the
	// parameters it sets in brackets (methods.Variant), e.g.
	// "cacheclip[aux_mode=cached]".
	Method string
	// Ratio is the requested recompute ratio; ignored when RatioFree (the
	// method takes none in the registry, so it is run once and drawn as a
	// reference).
	Ratio     float64
	RatioFree bool
	Questions int // questions asked
	Answered  int // answers read back
	// Score is RULER string_match_all averaged over questions, ×100.
	Score float64
	// ScoreLo and ScoreHi bound Score's 95% interval, bootstrapped over the
	// questions (package eval/bootstrap); NaN when unknown.
	ScoreLo, ScoreHi float64
	// PerQuestion is each question's score in [0, 1], in the task's question
	// order (the same for every run of a task); nil when unknown. It is not
	// written out: the paired differences between runs are (Differences).
	PerQuestion []float64
	// SameAsFull is the share (×100) of questions whose answer is identical
	// to full's; NaN when the task has no full run.
	SameAsFull float64
	// KLFirst is the mean over questions of KL(full ‖ method) in nats between
	// the distributions of the first answer token; NaN when unknown.
	KLFirst float64
	// TokenAgree is the share (×100) of full's greedy answer tokens that the
	// method produced at the same position (over the longer of the two
	// answers); NaN when unknown.
	TokenAgree float64
	TTFTP50ms  float64
	// AuxP50ms is the median time of the auxiliary stage per question (0 for
	// a method without an auxiliary model); NaN when unknown.
	AuxP50ms float64
	// Recomputed is the run's total of recomputed context tokens (Σ
	// n_recomputed): runs at one ratio do equal work when it is equal.
	Recomputed int64
	// SeedScores is the score of each seed's questions (×100) when the task
	// pooled several seeds; nil otherwise.
	SeedScores []SeedScore
}

// SeedScore is the score of one seed's questions.
type SeedScore struct {
	Seed  uint64
	Score float64
}

// Agreement is one primary layer's attention agreement with the auxiliary
// model's last layer (package eval/agree), averaged over a task's questions.
type Agreement struct {
	Task      string
	Layer     int
	Jaccard   float64 // of the top-k context tokens
	Spearman  float64 // rank correlation over all context tokens; NaN when undefined
	Questions int
}

// Results is everything one evaluation reports.
type Results struct {
	Title     string // heads the Markdown file; may be empty
	Rows      []Row
	Agreement []Agreement // optional
	// TopK describes the agreement's top-k, e.g. "top 20%".
	TopK string
	// Labels are the labeling task's runs (optional).
	Labels []LabelRow
	// Seed seeds the bootstrap of the paired differences between runs.
	Seed uint64
	// Families, when set and a strict subset of the tasks, get averages of
	// their own beside the averages over every task (the RULER families,
	// without the tasks of this project's own).
	Families []string
}

// Difference is the paired score difference A − B between two runs of a
// task on the same questions, with its 95% bootstrap interval.
type Difference struct {
	Task         string
	A, B         Row
	Diff, Lo, Hi float64 // ×100
}

// Verdict says what the interval allows: "A ahead", "B ahead" or no stated
// difference when it holds 0.
func (d Difference) Verdict() string {
	switch {
	case d.Lo > 0:
		return d.A.Method + " ahead"
	case d.Hi < 0:
		return d.B.Method + " ahead"
	}
	return "no difference shown"
}

// Differences pairs, within each task of rows (Sorted), every ratio-taking
// run with each ratio-free run and with each later ratio-taking run at the
// same ratio, skipping rows without per-question scores.
func Differences(rows []Row, seed uint64) []Difference {
	var out []Difference
	for i, a := range rows {
		if a.RatioFree || a.PerQuestion == nil {
			continue
		}
		for j, b := range rows {
			if j == i || b.Task != a.Task || b.PerQuestion == nil || !b.RatioFree && (b.Ratio != a.Ratio || j < i) {
				continue
			}
			lo, hi := bootstrap.PairedInterval(a.PerQuestion, b.PerQuestion, 0.95, bootstrap.Resamples, seed)
			if math.IsNaN(lo) {
				continue
			}
			out = append(out, Difference{Task: a.Task, A: a, B: b, Diff: a.Score - b.Score, Lo: 100 * lo, Hi: 100 * hi})
		}
	}
	return out
}

// DifferencesMarkdown writes the paired differences (nothing without any).
func DifferencesMarkdown(w io.Writer, ds []Difference) error {
	return section(w, len(ds), "Paired differences", "Score of A minus score of B on the same questions, with its 95% interval "+
		"(paired bootstrap over the questions). A difference is stated only where the interval leaves out 0.",
		[]string{"task", "ratio", "A", "B", "A − B", "95% interval", "verdict"}, func(b *bytes.Buffer, i int) {
			d := ds[i]
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", d.Task, RatioLabel(d.A), mdCell(d.A.Method), mdCell(RunLabel(d.B)),
				signed(d.Diff), interval(d.Lo, d.Hi), mdCell(d.Verdict()))
		})
}

// section writes a Markdown section of n table rows under a heading and an
// introduction (nothing when n is 0); row writes row i.
func section(w io.Writer, n int, heading, intro string, columns []string, row func(b *bytes.Buffer, i int)) error {
	if n == 0 {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "\n## %s\n\n%s\n\n| %s |\n|%s\n", heading, intro, strings.Join(columns, " | "), strings.Repeat("---|", len(columns)))
	for i := range n {
		row(&b, i)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// RunLabel names a run: its method variant, with the ratio when it has one.
func RunLabel(r Row) string {
	if r.RatioFree {
		return r.Method
	}
	return r.Method + " @ " + RatioLabel(r)
}

func signed(x float64) string {
	if x > 0 {
		return "+" + num(x, 1)
	}
	return num(x, 1)
}

// LabelRow is one (task, method, ratio) run of the labeling task: the task's
// questions in multiple-choice form, answered by a label job.
type LabelRow struct {
	Task      string
	Method    string
	Ratio     float64
	RatioFree bool
	Choices   int // per question
	Questions int
	Answered  int
	Accuracy  float64 // ×100
	AgreeFull float64 // ×100; NaN without full
	ProbFull  float64 // mean probability of full's label; NaN without full
	TTFTP50ms float64
}

// LabelMarkdown writes the labeling task's table (nothing without rows).
func LabelMarkdown(w io.Writer, rows []LabelRow) error {
	return section(w, len(rows), "Labeling task", "Each question in multiple-choice form (the right answer among distractors, "+
		"those in the context first), answered by a label job (`task: label`). Accuracy: share of right labels. "+
		"Agree: share of labels equal to full's. P(full): mean probability given to full's label.",
		[]string{"task", "method", "ratio", "choices", "answered", "accuracy %", "agree with full %", "P(full's label)", "TTFT p50 ms"},
		func(b *bytes.Buffer, i int) {
			r := rows[i]
			fmt.Fprintf(b, "| %s | %s | %s | %d | %d/%d | %s | %s | %s | %s |\n", r.Task, mdCell(r.Method),
				RatioLabel(Row{Method: r.Method, Ratio: r.Ratio, RatioFree: r.RatioFree}), r.Choices, r.Answered, r.Questions,
				num(r.Accuracy, 1), num(r.AgreeFull, 1), num(r.ProbFull, 3), num(r.TTFTP50ms, 1))
		})
}

// Baseline is the method every other method is compared against.
const Baseline = methods.Full

// Files are the paths Write produced, relative to its directory.
type Files struct {
	Markdown, CSV, Parquet string
	AgreementCSV           string // empty without agreement rows
	Plots                  []string
}

// Write writes results.md, results.csv, results.parquet and, per task,
// quality-<task>.png, fidelity-<task>.png and ttft-<task>.png into dir; with
// agreement rows also agreement.csv and agreement.png.
func Write(ctx context.Context, dir string, res Results) (Files, error) {
	var f Files
	rows := res.Rows
	if len(rows) == 0 {
		return f, fmt.Errorf("report: no result rows to write")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, fmt.Errorf("report: %w", err)
	}
	rows = Sorted(rows)
	colours := colourIndex(rows)
	f.Markdown, f.CSV, f.Parquet = "results.md", "results.csv", "results.parquet"
	if err := writeAtomic(filepath.Join(dir, f.Markdown), func(w io.Writer) error {
		if err := Markdown(w, res.Title, rows); err != nil {
			return err
		}
		if err := AveragesMarkdown(w, Averages(rows, res.Seed), "tasks"); err != nil {
			return err
		}
		if fam := OfTasks(rows, res.Families); len(res.Families) > 0 && len(tasks(fam)) < len(tasks(rows)) {
			if err := AveragesMarkdown(w, Averages(fam, res.Seed), "the families "+strings.Join(tasks(fam), ", ")); err != nil {
				return err
			}
		}
		if err := DifferencesMarkdown(w, Differences(rows, res.Seed)); err != nil {
			return err
		}
		if err := LabelMarkdown(w, res.Labels); err != nil {
			return err
		}
		return AgreementMarkdown(w, res.Agreement, res.TopK)
	}); err != nil {
		return f, err
	}
	if err := writeAtomic(filepath.Join(dir, f.CSV), func(w io.Writer) error { return CSV(w, rows) }); err != nil {
		return f, err
	}
	if err := writeAtomic(filepath.Join(dir, f.Parquet), func(w io.Writer) error { return parquet.Write(w, ParquetRows(rows)) }); err != nil {
		return f, err
	}
	for _, task := range tasks(rows) {
		if err := ctx.Err(); err != nil {
			return f, err
		}
		var tr []Row
		for _, r := range rows {
			if r.Task == task {
				tr = append(tr, r)
			}
		}
		for _, p := range []struct {
			name, ylabel string
			y            func(Row) float64
			band         func(Row) (lo, hi float64) // drawn as error bars; nil: none
			ceil         float64                    // fixed top of the y axis, 0: from the data
		}{
			{"quality-" + safeName(task) + ".png", "string_match_all (×100), 95% interval", func(r Row) float64 { return r.Score },
				func(r Row) (float64, float64) { return r.ScoreLo, r.ScoreHi }, 100},
			{"fidelity-" + safeName(task) + ".png", "KL(full || method), first answer token (nats)", func(r Row) float64 { return r.KLFirst }, nil, 0},
			{"ttft-" + safeName(task) + ".png", "TTFT p50 (ms)", func(r Row) float64 { return r.TTFTP50ms }, nil, 0},
		} {
			pl, err := linePlot(task+": "+p.ylabel+" vs recompute ratio", p.ylabel, tr, lineStyle{y: p.y, band: p.band, ceil: p.ceil, colours: colours})
			if err != nil {
				return f, fmt.Errorf("report: plot %s: %w", p.name, err)
			}
			wt, err := pl.WriterTo(6*vg.Inch, 4*vg.Inch, "png")
			if err != nil {
				return f, fmt.Errorf("report: plot %s: %w", p.name, err)
			}
			if err := writeAtomic(filepath.Join(dir, p.name), func(w io.Writer) error { _, err := wt.WriteTo(w); return err }); err != nil {
				return f, err
			}
			f.Plots = append(f.Plots, p.name)
		}
	}
	if len(res.Agreement) > 0 {
		if err := writeAtomic(filepath.Join(dir, "agreement.csv"), func(w io.Writer) error { return AgreementCSV(w, res.Agreement) }); err != nil {
			return f, err
		}
		f.AgreementCSV = "agreement.csv"
		pl, err := agreementPlot(res.Agreement, res.TopK)
		if err != nil {
			return f, fmt.Errorf("report: plot agreement.png: %w", err)
		}
		wt, err := pl.WriterTo(6*vg.Inch, 4*vg.Inch, "png")
		if err != nil {
			return f, fmt.Errorf("report: plot agreement.png: %w", err)
		}
		if err := writeAtomic(filepath.Join(dir, "agreement.png"), func(w io.Writer) error { _, err := wt.WriteTo(w); return err }); err != nil {
			return f, err
		}
		f.Plots = append(f.Plots, "agreement.png")
	}
	return f, nil
}

// AgreementMarkdown writes the attention-agreement table (nothing without rows).
func AgreementMarkdown(w io.Writer, rows []Agreement, topK string) error {
	if len(rows) == 0 {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "\n## Attention agreement: auxiliary (last layer) against each primary layer\n\n"+
		"Question-to-context attention, averaged over heads and question tokens. Jaccard: overlap of the %s "+
		"context tokens; Spearman: rank correlation over all context tokens.\n\n", topK)
	b.WriteString("| task | primary layer | Jaccard | Spearman | questions |\n|---|---|---|---|---|\n")
	for _, a := range rows {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d |\n", a.Task, a.Layer, num(a.Jaccard, 3), num(a.Spearman, 3), a.Questions)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// AgreementCSV writes agreement.csv.
func AgreementCSV(w io.Writer, rows []Agreement) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"task", "primary_layer", "jaccard_topk", "spearman", "questions"}); err != nil {
		return err
	}
	for _, a := range rows {
		if err := cw.Write([]string{a.Task, strconv.Itoa(a.Layer), cell(a.Jaccard), cell(a.Spearman), strconv.Itoa(a.Questions)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// agreementPlot draws Jaccard (solid) and Spearman (dashed) against the
// primary layer, one colour per task.
func agreementPlot(rows []Agreement, topK string) (*plot.Plot, error) {
	p := plot.New()
	p.Add(plotter.NewGrid())
	p.Title.Text = "auxiliary vs primary attention, per primary layer"
	p.X.Label.Text = "primary layer"
	p.Y.Label.Text = "agreement"
	p.Legend.Top = true
	ts := []string{}
	seen := map[string]bool{}
	for _, a := range rows {
		if !seen[a.Task] {
			seen[a.Task] = true
			ts = append(ts, a.Task)
		}
	}
	ymin, xmax := 0.0, 0
	for i, task := range ts {
		var jac, rho plotter.XYs
		for _, a := range rows {
			if a.Task != task {
				continue
			}
			xmax = max(xmax, a.Layer)
			if !math.IsNaN(a.Jaccard) {
				jac = append(jac, plotter.XY{X: float64(a.Layer), Y: a.Jaccard})
			}
			if !math.IsNaN(a.Spearman) {
				rho = append(rho, plotter.XY{X: float64(a.Layer), Y: a.Spearman})
				ymin = min(ymin, a.Spearman)
			}
		}
		col := plotutil.Color(i)
		for _, s := range []struct {
			pts    plotter.XYs
			label  string
			dashed bool
		}{{jac, task + ": Jaccard " + topK, false}, {rho, task + ": Spearman", true}} {
			if len(s.pts) == 0 {
				continue
			}
			l, g, err := plotter.NewLinePoints(s.pts)
			if err != nil {
				return nil, err
			}
			l.Color, g.Color = col, col
			l.Width = vg.Points(1.5)
			if s.dashed {
				l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			}
			g.Shape = draw.CircleGlyph{}
			p.Add(l, g)
			p.Legend.Add(s.label, l, g)
		}
	}
	p.X.Min, p.X.Max = -0.2, float64(xmax)+0.2
	p.Y.Min, p.Y.Max = ymin, 1.6 // the legend sits in the band above 1
	return p, nil
}

// Sorted returns rows ordered by task (first appearance), then by the
// conventional method order, then by ratio.
func Sorted(rows []Row) []Row {
	out := append([]Row(nil), rows...)
	taskOrder := map[string]int{}
	for _, r := range rows {
		if _, ok := taskOrder[r.Task]; !ok {
			taskOrder[r.Task] = len(taskOrder)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Task != b.Task {
			return taskOrder[a.Task] < taskOrder[b.Task]
		}
		if ma, mb := methodRank(a.Method), methodRank(b.Method); ma != mb {
			return ma < mb
		}
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		return a.Ratio < b.Ratio
	})
	return out
}

// methodRank orders method variants as the registry lists their methods;
// unknown ones last.
func methodRank(m string) int {
	if v, err := methods.ParseVariant(m); err == nil {
		m = v.Method
	}
	if i := slices.Index(methods.Default().Names(), m); i >= 0 {
		return i
	}
	return math.MaxInt
}

func tasks(rows []Row) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.Task] {
			seen[r.Task] = true
			out = append(out, r.Task)
		}
	}
	return out
}

// fullScore is the baseline's score for task, or NaN when there is none.
func fullScore(rows []Row, task string) float64 {
	for _, r := range rows {
		if r.Task == task && r.Method == Baseline {
			return r.Score
		}
	}
	return math.NaN()
}

// OfFull is score as a percentage of full's score: NaN when full is missing
// or scored 0 (a ratio to zero says nothing).
func OfFull(score, full float64) float64 {
	if math.IsNaN(full) || full == 0 {
		return math.NaN()
	}
	return 100 * score / full
}

// RatioLabel is how a row's ratio is shown: "-" for ratio-free methods.
func RatioLabel(r Row) string {
	if r.RatioFree {
		return "-"
	}
	return strconv.FormatFloat(r.Ratio, 'f', -1, 64)
}

// interval is a 95% interval as "[lo, hi]", or "n/a".
func interval(lo, hi float64) string {
	if math.IsNaN(lo) || math.IsNaN(hi) {
		return "n/a"
	}
	return "[" + num(lo, 1) + ", " + num(hi, 1) + "]"
}

// mdCell escapes what a Markdown table cell would read as markup: a variant's
// brackets would otherwise start a link.
func mdCell(s string) string {
	return strings.NewReplacer("[", `\[`, "]", `\]`, "|", `\|`).Replace(s)
}

func num(x float64, prec int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

// Markdown writes the results table (rows must be Sorted).
func Markdown(w io.Writer, title string, rows []Row) error {
	var b bytes.Buffer
	if title != "" {
		fmt.Fprintf(&b, "# %s\n\n", title)
	}
	b.WriteString("Score: RULER string_match_all ×100, with its 95% interval (percentile bootstrap over the questions, " +
		strconv.Itoa(bootstrap.Resamples) + " resamples). % of full: score / full's score. " +
		"Same as full: share of answers identical to full's. KL: mean KL(full ‖ method) of the first answer " +
		"token's distribution, in nats. Token agree: share of full's greedy answer tokens reproduced at the same " +
		"position. Per seed: the score of each seed's questions, when the task pooled several (the interval is over " +
		"the pooled questions). Recomputed: context tokens recomputed over the run (equal at one ratio: equal work). " +
		"Aux p50: median time of the auxiliary stage per question. TTFT: p50 time to first token.\n\n")
	b.WriteString("| task | method | ratio | answered | score | 95% interval | per seed | % of full | same as full % | KL first token | token agree % | recomputed | aux p50 ms | TTFT p50 ms |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", r.Task, mdCell(r.Method), RatioLabel(r), r.Answered, r.Questions,
			num(r.Score, 1), interval(r.ScoreLo, r.ScoreHi), seedCell(r.SeedScores, " / "), num(OfFull(r.Score, fullScore(rows, r.Task)), 1), num(r.SameAsFull, 1), num(r.KLFirst, 4),
			num(r.TokenAgree, 1), r.Recomputed, num(r.AuxP50ms, 2), num(r.TTFTP50ms, 1))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// CSVHeader is the first row of results.csv.
var CSVHeader = []string{"task", "method", "ratio", "questions", "answered", "score", "score_lo", "score_hi", "score_by_seed", "pct_of_full", "same_as_full_pct",
	"kl_first_token", "token_agree_pct", "recomputed_tokens", "aux_p50_ms", "ttft_p50_ms"}

// seedCell lists each seed's score, "-" without seeds: in the Markdown
// table "100.0 / 96.0 / 98.0", in the CSV "2026:100;2027:96;2028:98".
func seedCell(ss []SeedScore, sep string) string {
	if len(ss) == 0 {
		return "-"
	}
	parts := make([]string, len(ss))
	for i, x := range ss {
		if sep == ";" {
			parts[i] = strconv.FormatUint(x.Seed, 10) + ":" + cell(x.Score)
		} else {
			parts[i] = num(x.Score, 1)
		}
	}
	return strings.Join(parts, sep)
}

// cell is a CSV cell: empty for a missing value.
func cell(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return ""
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// CSV writes results.csv (rows must be Sorted). Missing values are empty
// cells; ratio-free methods have an empty ratio.
func CSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, r := range rows {
		ratio := ""
		if !r.RatioFree {
			ratio = cell(r.Ratio)
		}
		rec := []string{r.Task, r.Method, ratio, strconv.Itoa(r.Questions), strconv.Itoa(r.Answered),
			cell(r.Score), cell(r.ScoreLo), cell(r.ScoreHi), seedCell(r.SeedScores, ";"), cell(OfFull(r.Score, fullScore(rows, r.Task))), cell(r.SameAsFull), cell(r.KLFirst), cell(r.TokenAgree),
			strconv.FormatInt(r.Recomputed, 10), cell(r.AuxP50ms), cell(r.TTFTP50ms)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ParquetRow is one row of results.parquet: the CSV's columns, with nulls
// where the CSV has empty cells.
type ParquetRow struct {
	Task          string   `parquet:"task"`
	Method        string   `parquet:"method"`
	Ratio         *float64 `parquet:"ratio,optional"`
	Questions     int32    `parquet:"questions"`
	Answered      int32    `parquet:"answered"`
	Score         float64  `parquet:"score"`
	ScoreLo       *float64 `parquet:"score_lo,optional"`
	ScoreHi       *float64 `parquet:"score_hi,optional"`
	PctOfFull     *float64 `parquet:"pct_of_full,optional"`
	SameAsFullPct *float64 `parquet:"same_as_full_pct,optional"`
	KLFirstToken  *float64 `parquet:"kl_first_token,optional"`
	TokenAgreePct *float64 `parquet:"token_agree_pct,optional"`
	ScoreBySeed   string   `parquet:"score_by_seed"`
	Recomputed    int64    `parquet:"recomputed_tokens"`
	AuxP50ms      *float64 `parquet:"aux_p50_ms,optional"`
	TTFTP50ms     float64  `parquet:"ttft_p50_ms"`
}

// ParquetRows converts rows (Sorted) to results.parquet's rows.
func ParquetRows(rows []Row) []ParquetRow {
	opt := func(x float64) *float64 {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return &x
	}
	out := make([]ParquetRow, 0, len(rows))
	for _, r := range rows {
		pr := ParquetRow{Task: r.Task, Method: r.Method, Questions: int32(r.Questions), Answered: int32(r.Answered), Score: r.Score,
			ScoreLo: opt(r.ScoreLo), ScoreHi: opt(r.ScoreHi),
			PctOfFull: opt(OfFull(r.Score, fullScore(rows, r.Task))), SameAsFullPct: opt(r.SameAsFull),
			KLFirstToken: opt(r.KLFirst), TokenAgreePct: opt(r.TokenAgree), ScoreBySeed: seedCell(r.SeedScores, ";"),
			Recomputed: r.Recomputed, AuxP50ms: opt(r.AuxP50ms), TTFTP50ms: r.TTFTP50ms}
		if !r.RatioFree {
			pr.Ratio = opt(r.Ratio)
		}
		out = append(out, pr)
	}
	return out
}

// colourIndex gives each method variant of rows (Sorted) its own colour
// index, the same in every task's plots.
func colourIndex(rows []Row) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		if _, ok := out[r.Method]; !ok {
			out[r.Method] = len(out)
		}
	}
	return out
}

// lineStyle is what linePlot draws of each row: y, an optional band around
// it (error bars), a fixed top of the y axis (0: from the data) and the
// colour index of each method variant.
type lineStyle struct {
	y       func(Row) float64
	band    func(Row) (lo, hi float64)
	ceil    float64
	colours map[string]int
}

// yErrors is a line's points with their error bars.
type yErrors struct {
	plotter.XYs
	plotter.YErrors
}

// linePlot draws one line per ratio-taking method variant and a dashed
// horizontal line per ratio-free one across the plotted ratio range.
func linePlot(title, ylabel string, rows []Row, st lineStyle) (*plot.Plot, error) {
	y, ceil := st.y, st.ceil
	p := plot.New()
	p.Add(plotter.NewGrid())
	p.Title.Text = title
	p.X.Label.Text = "recompute ratio"
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rows {
		if !r.RatioFree {
			lo, hi = min(lo, r.Ratio), max(hi, r.Ratio)
		}
	}
	if math.IsInf(lo, 0) { // no ratio-taking methods: draw the references over [0,1]
		lo, hi = 0, 1
	}
	if lo == hi {
		lo, hi = max(0, lo-0.05), min(1, hi+0.05)
	}
	var methods []string
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.Method] {
			seen[r.Method] = true
			methods = append(methods, r.Method)
		}
	}
	ymax := 0.0
	for _, m := range methods {
		var pts plotter.XYs
		var errs plotter.YErrors
		free := false
		for _, r := range rows {
			if r.Method != m || math.IsNaN(y(r)) {
				continue
			}
			ymax = max(ymax, y(r))
			if r.RatioFree {
				free = true
				pts = plotter.XYs{{X: lo, Y: y(r)}, {X: hi, Y: y(r)}}
				break
			}
			pts = append(pts, plotter.XY{X: r.Ratio, Y: y(r)})
			if st.band != nil {
				bl, bh := st.band(r)
				if math.IsNaN(bl) || math.IsNaN(bh) {
					bl, bh = y(r), y(r)
				}
				errs = append(errs, struct{ Low, High float64 }{y(r) - bl, bh - y(r)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		col := plotutil.Color(st.colours[m]) // one colour per method variant across every plot
		if free {
			l, err := plotter.NewLine(pts)
			if err != nil {
				return nil, err
			}
			l.Color = col
			l.Width = vg.Points(1.5)
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			p.Add(l)
			p.Legend.Add(m, l)
			continue
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color, s.Color = col, col
		l.Width = vg.Points(1.5)
		s.Shape = draw.CircleGlyph{}
		p.Add(l, s)
		p.Legend.Add(m, l, s)
		if len(errs) == len(pts) {
			eb, err := plotter.NewYErrorBars(yErrors{pts, errs})
			if err != nil {
				return nil, err
			}
			eb.Color = col
			p.Add(eb)
		}
	}
	p.X.Min, p.X.Max = lo, hi
	p.Y.Min = 0
	if ceil > 0 {
		ymax = max(ymax, ceil)
	}
	if ymax <= 0 {
		ymax = 1
	}
	// The legend sits at the top: leave it a band above the highest line.
	p.Y.Max = ymax * 1.45
	return p, nil
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// writeAtomic writes path atomically (package atomicfile).
func writeAtomic(path string, write func(io.Writer) error) error {
	if err := atomicfile.Write(path, atomicfile.Options{}, func(f *os.File) error { return write(f) }); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
