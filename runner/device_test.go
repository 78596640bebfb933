package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"cacheclip/gpu"
	"cacheclip/jobs"
	"cacheclip/model/testmodel"
)

// An explicit cuda request fails before the model is read, with the reason
// the device layer gives (the missing library or device) — on this machine
// and in CI, which have no NVIDIA driver. Where a device does open, the same
// request gets past the device and fails on the missing model instead.
func TestDeviceCUDAFailsAtOnce(t *testing.T) {
	ctx := context.Background()
	js := jobs.DefaultSpec()
	js.Model = filepath.Join(t.TempDir(), "no-such-model")
	js.Method = "full"
	for _, dev := range []string{"cuda", "cuda:0", "cuda:3"} {
		t.Run(dev, func(t *testing.T) {
			js.Device = dev
			ds, err := gpu.ParseDevice(dev)
			if err != nil {
				t.Fatal(err)
			}
			_, openErr := gpu.Open(ctx, ds.Ordinal)
			eng, err := NewEngine(ctx, js, slog.New(slog.DiscardHandler))
			if eng != nil {
				eng.Close()
			}
			if err == nil {
				t.Fatal("no error for a model directory that does not exist")
			}
			if openErr == nil {
				if !strings.Contains(err.Error(), "primary model") {
					t.Fatalf("device opens, but the error is not the model's: %v", err)
				}
				return
			}
			if !strings.Contains(err.Error(), openErr.Error()) || !strings.Contains(err.Error(), "device "+ds.String()+" requested") {
				t.Fatalf("error %q does not carry the device layer's reason %q", err, openErr)
			}
			if strings.Contains(err.Error(), "primary model") {
				t.Fatalf("the model was read before the device was resolved: %v", err)
			}
		})
	}
}

// fakeSelect stands in for gpu.Select: auto falls back to the CPU with a
// logged reason, cuda fails with it.
func fakeSelect(reason error) selectFunc {
	return func(ctx context.Context, ds gpu.DeviceSpec, log *slog.Logger) (*gpu.Device, error) {
		switch ds.Kind {
		case gpu.KindCUDA:
			return nil, fmt.Errorf("device %s requested: %w", ds, reason)
		case gpu.KindAuto:
			log.Info("device auto: using the CPU backend", "reason", reason.Error())
		}
		return nil, nil
	}
}

// auto and cpu run the job on the CPU; every row and stats.json say so, and
// auto logs why it did not take the GPU.
func TestDeviceAutoRunsOnCPU(t *testing.T) {
	dir := t.TempDir()
	mdir := filepath.Join(dir, "model")
	if err := testmodel.Write(mdir, testmodel.Variants()[0]); err != nil {
		t.Fatal(err)
	}
	corpus := mapCorpus{"c1": "The grass is green.", "c2": "The magic number is 7319."}
	rows := []qRow{{QueryID: "a", Question: "What colour?", ChunkIDs: []string{"c1"}, Lang: "en"},
		{QueryID: "b", Question: "Which number?", ChunkIDs: []string{"c1", "c2"}, Lang: "en"},
		{QueryID: "bad", Question: "?", ChunkIDs: []string{"missing"}, Lang: "en"}}
	reason := errors.New("libcuda.so.1: not found (tried /usr/lib/x86_64-linux-gnu)")
	for _, dev := range []string{"auto", "cpu"} {
		t.Run(dev, func(t *testing.T) {
			js := jobs.DefaultSpec()
			js.Questions = writeQuestions(t, dir, rows)
			js.Out = filepath.Join(dir, "out-"+dev)
			js.Model = mdir
			js.Method = "reuse"
			js.MaxNewTokens = 3
			js.Device = dev
			js.MaxErrors = jobs.ErrorBudget{Count: 1}
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			ctx := context.Background()
			eng, err := newEngine(ctx, js, log, fakeSelect(reason))
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			if eng.Device() != "cpu" {
				t.Fatalf("Device() = %q, want cpu", eng.Device())
			}
			if got := strings.Contains(logs.String(), reason.Error()); got != (dev == "auto") {
				t.Fatalf("reason logged = %v for %s; log:\n%s", got, dev, logs.String())
			}
			if _, err := Run(ctx, Options{Spec: js, Stages: eng, Corpus: corpus, Logger: log}); err != nil {
				t.Fatal(err)
			}
			type row struct {
				QueryID string `parquet:"query_id"`
				Status  string `parquet:"status"`
				Device  string `parquet:"device"`
			}
			parts, _ := filepath.Glob(filepath.Join(js.Out, "part-*.parquet"))
			n := 0
			for _, p := range parts {
				rs, err := parquet.ReadFile[row](p)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					n++
					if r.Device != "cpu" {
						t.Errorf("row %s (%s): device %q, want cpu", r.QueryID, r.Status, r.Device)
					}
				}
			}
			if n != len(rows) {
				t.Fatalf("%d rows, want %d", n, len(rows))
			}
			b, err := os.ReadFile(filepath.Join(js.Out, jobs.StatsFile))
			if err != nil {
				t.Fatal(err)
			}
			var st struct {
				Device string `json:"device"`
			}
			if err := json.Unmarshal(b, &st); err != nil || st.Device != "cpu" {
				t.Fatalf("stats.json device %q (%v), want cpu", st.Device, err)
			}
		})
	}
}

// A cuda request that the selector refuses stops NewEngine with its reason.
func TestDeviceCUDARefusedBySelector(t *testing.T) {
	js := jobs.DefaultSpec()
	js.Model = filepath.Join(t.TempDir(), "never-read")
	js.Device = "cuda:1"
	_, err := newEngine(context.Background(), js, slog.New(slog.DiscardHandler), fakeSelect(gpu.ErrNoDevice))
	if !errors.Is(err, gpu.ErrNoDevice) || strings.Contains(err.Error(), "primary model") {
		t.Fatalf("err = %v, want the selector's ErrNoDevice before the model is read", err)
	}
}

func TestHostCacheBytes(t *testing.T) {
	const mib = 1 << 20
	avail := func(n int64, err error) func() (int64, error) { return func() (int64, error) { return n, err } }
	for _, c := range []struct {
		name string
		set  int
		mem  func() (int64, error)
		want int64
	}{
		{"set wins", 100, avail(64<<30, nil), 100 * mib},
		{"quarter of available", 0, avail(8<<30, nil), 2 << 30},
		{"capped at 4 GiB", 0, avail(128<<30, nil), 4 << 30},
		{"at least 256 MiB", 0, avail(512*mib, nil), 256 * mib},
		{"unreadable: 4 GiB", 0, avail(0, errors.New("no /proc")), 4 << 30},
	} {
		if got := hostCacheBytes(c.set, c.mem); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	if n, err := readMemAvailable(); err != nil || n <= 0 {
		t.Fatalf("readMemAvailable = %d, %v on Linux", n, err)
	}
}
