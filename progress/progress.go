// Package progress reports the progress of long jobs (the batch runner, the
// shard builder): a bar with rate and ETA on a terminal, periodic structured
// log/slog lines otherwise (JSON when the logger is a JSON logger).
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter is what a job calls as it works. Implementations are safe for
// concurrent use.
type Reporter interface {
	// Add records n more items done.
	Add(n int)
	// SetTotal sets the number of items expected (<= 0: unknown).
	SetTotal(total int64)
	// Done ends the report (final bar state or a final log line).
	Done()
}

// Mode selects how progress is shown.
type Mode int

const (
	// Auto shows a bar when the output is a terminal and logs otherwise.
	Auto Mode = iota
	Bar
	Log
	None
)

// ParseMode parses "auto", "bar", "log" or "none".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return Auto, nil
	case "bar":
		return Bar, nil
	case "log":
		return Log, nil
	case "none":
		return None, nil
	}
	return Auto, fmt.Errorf("progress mode %q: want auto, bar, log or none", s)
}

// Options configure New.
type Options struct {
	Mode        Mode
	Description string // "answering", "building shards"
	Unit        string // "rows", "chunks" (default "items")
	Total       int64  // <= 0: unknown until SetTotal
	// Out is where the bar draws (default os.Stderr); Auto checks whether it
	// is a terminal.
	Out io.Writer
	// Logger receives the log lines (default slog.Default()).
	Logger *slog.Logger
	// Interval between log lines (default 10s).
	Interval time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// New returns a Reporter for opts.
func New(opts Options) Reporter {
	if opts.Out == nil {
		opts.Out = os.Stderr
	}
	if opts.Unit == "" {
		opts.Unit = "items"
	}
	mode := opts.Mode
	if mode == Auto {
		mode = Log
		if IsTerminal(opts.Out) {
			mode = Bar
		}
	}
	switch mode {
	case None:
		return nop{}
	case Bar:
		return newBar(opts)
	default:
		return newLogReporter(opts)
	}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

type nop struct{}

func (nop) Add(int)        {}
func (nop) SetTotal(int64) {}
func (nop) Done()          {}

type bar struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func newBar(o Options) *bar {
	total := o.Total
	if total <= 0 {
		total = -1 // spinner until the total is known
	}
	return &bar{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(o.Out),
		progressbar.OptionSetDescription(o.Description),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(o.Unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(o.Out) }),
	)}
}

func (b *bar) Add(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.bar.Add(n) // a failed terminal write must not fail the job
}

func (b *bar) SetTotal(total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if total <= 0 {
		total = -1
	}
	b.bar.ChangeMax64(total)
}

func (b *bar) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.bar.Finish()
}

// logReporter writes a line at most every Interval, from Add, so it needs no
// goroutine of its own.
type logReporter struct {
	mu       sync.Mutex
	o        Options
	log      *slog.Logger
	start    time.Time
	last     time.Time
	lastDone int64
	done     int64
	total    int64
	finished bool
}

func newLogReporter(o Options) *logReporter {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	now := o.Now()
	return &logReporter{o: o, log: o.Logger, start: now, last: now, total: o.Total}
}

func (l *logReporter) Add(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done += int64(n)
	if now := l.o.Now(); now.Sub(l.last) >= l.o.Interval {
		l.emit(now, "progress")
	}
}

func (l *logReporter) SetTotal(total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total = total
}

func (l *logReporter) Done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return
	}
	l.finished = true
	l.emit(l.o.Now(), "progress done")
}

// emit logs done/total, the overall rate, the rate since the last line, and
// an ETA from the overall rate.
func (l *logReporter) emit(now time.Time, msg string) {
	elapsed := now.Sub(l.start).Seconds()
	attrs := []any{"task", l.o.Description, "unit", l.o.Unit, "done", l.done}
	if l.total > 0 {
		attrs = append(attrs, "total", l.total, "percent", roundTo(100*float64(l.done)/float64(l.total), 1))
	}
	var rate float64
	if elapsed > 0 {
		rate = float64(l.done) / elapsed
		attrs = append(attrs, "rate_per_s", roundTo(rate, 2))
	}
	if dt := now.Sub(l.last).Seconds(); dt > 0 && msg == "progress" {
		attrs = append(attrs, "recent_rate_per_s", roundTo(float64(l.done-l.lastDone)/dt, 2))
	}
	if l.total > 0 && rate > 0 && l.done < l.total && msg == "progress" {
		eta := time.Duration(float64(l.total-l.done) / rate * float64(time.Second))
		attrs = append(attrs, "eta", eta.Round(time.Second).String())
	}
	attrs = append(attrs, "elapsed", now.Sub(l.start).Round(time.Millisecond).String())
	l.log.Info(msg, attrs...)
	l.last, l.lastDone = now, l.done
}

func roundTo(x float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(x*p+0.5)) / p
}

// NewLogger returns a slog logger writing text or JSON ("json") lines to w.
func NewLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
