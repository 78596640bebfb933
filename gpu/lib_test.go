package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "libnvrtc.so.11.2"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := libNVRTC
	tests := []struct {
		name     string
		loadable map[string]bool // paths the fake loader accepts
		wantPath string
		wantErr  []string
	}{
		{"loader finds the first soname", map[string]bool{"libnvrtc.so.13": true, "libnvrtc.so.12": true}, "libnvrtc.so.13", nil},
		{"loader finds an older soname", map[string]bool{"libnvrtc.so.11.2": true}, "libnvrtc.so.11.2", nil},
		{"found in a search directory", map[string]bool{filepath.Join(dir, "libnvrtc.so.11.2"): true}, filepath.Join(dir, "libnvrtc.so.11.2"), nil},
		{"missing everywhere", map[string]bool{}, "", []string{"NVRTC", "libnvrtc.so.12", "libnvrtc.so.11.2", dir, "CACHECLIP_CUDA_LIB_PATH", "no such library"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tried []string
			open := func(p string) (uintptr, error) {
				tried = append(tried, p)
				if tc.loadable[p] {
					return 1, nil
				}
				return 0, fmt.Errorf("%s: no such library", p)
			}
			_, path, err := findLibrary(spec, []string{dir, "/nonexistent"}, open)
			if tc.wantErr == nil {
				if err != nil || path != tc.wantPath {
					t.Fatalf("got %q, %v; want %q (tried %v)", path, err, tc.wantPath, tried)
				}
				return
			}
			var le *LibraryError
			if !errors.As(err, &le) {
				t.Fatalf("want LibraryError, got %v", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			// Files that do not exist are not handed to the loader.
			for _, p := range tried {
				if strings.HasPrefix(p, "/nonexistent") {
					t.Errorf("tried missing file %s", p)
				}
			}
		})
	}
}

func TestSearchDirs(t *testing.T) {
	env := map[string]string{
		"CACHECLIP_CUDA_LIB_PATH": "/opt/a:/opt/b",
		"LD_LIBRARY_PATH":         "/opt/b::/opt/c",
		"CUDA_HOME":               "/opt/cuda",
	}
	got := searchDirs(func(k string) string { return env[k] })
	want := []string{"/opt/a", "/opt/b", "/opt/c", "/opt/cuda/lib64", "/opt/cuda/lib", "/usr/local/cuda/lib64"}
	if len(got) < len(want) {
		t.Fatalf("got %v", got)
	}
	for i, w := range want {
		if got[i] != w {
			t.Fatalf("dir %d: got %v, want prefix %v", i, got, want)
		}
	}
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d] {
			t.Fatalf("duplicate %s in %v", d, got)
		}
		seen[d] = true
	}
}

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in      string
		want    DeviceSpec
		wantErr bool
	}{
		{"auto", DeviceSpec{Kind: KindAuto}, false},
		{"", DeviceSpec{Kind: KindAuto}, false},
		{"cpu", DeviceSpec{Kind: KindCPU}, false},
		{"CUDA", DeviceSpec{Kind: KindCUDA}, false},
		{"cuda:0", DeviceSpec{Kind: KindCUDA, Ordinal: 0}, false},
		{"cuda:3", DeviceSpec{Kind: KindCUDA, Ordinal: 3}, false},
		{" cuda:1 ", DeviceSpec{Kind: KindCUDA, Ordinal: 1}, false},
		{"cuda:", DeviceSpec{}, true},
		{"cuda:-1", DeviceSpec{}, true},
		{"cuda:x", DeviceSpec{}, true},
		{"tpu", DeviceSpec{}, true},
	}
	for _, tc := range tests {
		got, err := ParseDevice(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseDevice(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "cuda:N") {
			t.Errorf("ParseDevice(%q) error %q does not say what is accepted", tc.in, err)
		}
	}
}

func TestSelect(t *testing.T) {
	missing := &LibraryError{What: libCUDA.what, Names: libCUDA.names, Dirs: []string{"/usr/lib64"}, Last: errors.New("not found")}
	tests := []struct {
		name     string
		spec     DeviceSpec
		openErr  error
		wantDev  bool
		wantErr  string
		wantLog  string
		wantOpen int // ordinal asked for; -1: open not called
	}{
		{"cpu never opens", DeviceSpec{Kind: KindCPU}, nil, false, "", "", -1},
		{"auto with a GPU", DeviceSpec{Kind: KindAuto}, nil, true, "", "using CUDA", 0},
		{"auto without driver falls back", DeviceSpec{Kind: KindAuto}, missing, false, "", "libcuda.so.1", 0},
		{"auto without device falls back", DeviceSpec{Kind: KindAuto}, fmt.Errorf("%w: the driver reports none", ErrNoDevice), false, "", "CPU backend", 0},
		{"cuda without driver fails", DeviceSpec{Kind: KindCUDA, Ordinal: 1}, missing, false, "libcuda.so.1", "", 1},
		{"cuda:2 absent fails", DeviceSpec{Kind: KindCUDA, Ordinal: 2}, fmt.Errorf("%w: device 2 asked for, the driver reports 1", ErrNoDevice), false, "device 2 asked for", "", 2},
		{"cuda:1 present", DeviceSpec{Kind: KindCUDA, Ordinal: 1}, nil, true, "", "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			asked := -1
			open := func(_ context.Context, ord int) (*Device, error) {
				asked = ord
				if tc.openErr != nil {
					return nil, tc.openErr
				}
				return &Device{Ordinal: ord, Name: "fake", CC: 90}, nil
			}
			d, err := selectWith(context.Background(), tc.spec, log, open)
			if asked != tc.wantOpen {
				t.Errorf("opened ordinal %d, want %d", asked, tc.wantOpen)
			}
			if (d != nil) != tc.wantDev {
				t.Errorf("device %v, want present=%v", d, tc.wantDev)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "requested") {
					t.Errorf("error %v, want one mentioning %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Errorf("unexpected error %v", err)
			}
			if tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log %q lacks %q", logs.String(), tc.wantLog)
			}
		})
	}
}

// TestOpenWithoutGPU runs the real Open: on a machine without the NVIDIA driver
// it must fail with an error naming libcuda (never panic), and auto must fall
// back to the CPU. On a GPU machine it must open the device.
func TestOpenWithoutGPU(t *testing.T) {
	d, err := Open(context.Background(), 0)
	if err == nil {
		defer d.Close()
		if d.CC < 50 || d.Name == "" {
			t.Fatalf("opened device with implausible properties: %v", d)
		}
		return
	}
	if !strings.Contains(err.Error(), "libcuda") && !errors.Is(err, ErrNoDevice) && !strings.Contains(err.Error(), "cuda") {
		t.Fatalf("Open without a GPU: unhelpful error %v", err)
	}
	var logs strings.Builder
	got, err := Select(context.Background(), DeviceSpec{Kind: KindAuto}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || got != nil || !strings.Contains(logs.String(), "CPU backend") {
		t.Fatalf("auto without GPU: device %v, error %v, log %q", got, err, logs.String())
	}
}
