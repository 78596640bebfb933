package progress

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLogReporterJSON(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	r := New(Options{Mode: Log, Description: "answering", Unit: "rows", Total: 100,
		Logger: NewLogger(&buf, "json", slog.LevelInfo), Interval: 10 * time.Second,
		Now: func() time.Time { return now }})
	steps := []struct {
		advance time.Duration
		add     int
	}{{time.Second, 10}, {time.Second, 10}, {9 * time.Second, 20}, {5 * time.Second, 10}, {6 * time.Second, 10}}
	for _, s := range steps {
		now = now.Add(s.advance)
		r.Add(s.add)
	}
	r.Done()
	r.Done() // idempotent
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		lines = append(lines, m)
	}
	// Lines at t=11s (40 done) and t=22s (60 done), then the final line.
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	first := lines[0]
	if first["msg"] != "progress" || first["done"].(float64) != 40 || first["total"].(float64) != 100 ||
		first["unit"] != "rows" || first["task"] != "answering" {
		t.Errorf("first line %v", first)
	}
	// 40 rows in 11 s: 3.64/s, 60 left: ETA 16.5s -> "17s" (rounded).
	if r := first["rate_per_s"].(float64); r < 3.6 || r > 3.7 {
		t.Errorf("rate %v", r)
	}
	if first["eta"] != "17s" && first["eta"] != "16s" {
		t.Errorf("eta %v", first["eta"])
	}
	if lines[1]["done"].(float64) != 60 || lines[2]["msg"] != "progress done" {
		t.Errorf("lines %v", lines)
	}
}

func TestModes(t *testing.T) {
	cases := []struct {
		in   string
		want Mode
		err  bool
	}{{"", Auto, false}, {"auto", Auto, false}, {"bar", Bar, false}, {"log", Log, false}, {"none", None, false}, {"fancy", Auto, true}}
	for _, c := range cases {
		m, err := ParseMode(c.in)
		if (err != nil) != c.err || (!c.err && m != c.want) {
			t.Errorf("ParseMode(%q) = %v, %v", c.in, m, err)
		}
	}
	// A buffer is not a terminal: Auto logs.
	var out, logs bytes.Buffer
	r := New(Options{Out: &out, Logger: NewLogger(&logs, "text", slog.LevelInfo), Total: 3})
	r.Add(3)
	r.Done()
	if out.Len() != 0 || !strings.Contains(logs.String(), "progress done") {
		t.Errorf("auto on a buffer: out %q logs %q", out.String(), logs.String())
	}
}

func TestBarDrawsAndIsConcurrent(t *testing.T) {
	var out bytes.Buffer
	r := New(Options{Mode: Bar, Out: &out, Description: "building", Unit: "chunks"})
	r.SetTotal(400)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				r.Add(1)
			}
		}()
	}
	wg.Wait()
	r.Done()
	s := out.String()
	if !strings.Contains(s, "400/400") || !strings.Contains(s, "building") {
		t.Errorf("bar output %q", s)
	}
}
