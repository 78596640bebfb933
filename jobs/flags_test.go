package jobs

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

// The engine flags are run's flags under the same names, and ResolveEngine
// checks the engine's settings and only those.
func TestEngineFlags(t *testing.T) {
	all := FlagNames()
	fs := flag.NewFlagSet("answer", flag.ContinueOnError)
	RegisterEngineFlags(fs)
	var got []string
	fs.VisitAll(func(f *flag.Flag) { got = append(got, f.Name) })
	slices.Sort(got)
	want := EngineFlagNames()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("registered %v, want %v", got, want)
	}
	for _, n := range got {
		if !slices.Contains(all, n) {
			t.Errorf("engine flag --%s is not a flag of cacheclip run", n)
		}
	}
	cases := []struct {
		name string
		args []string
		want string // "" = valid
	}{
		{"engine only", []string{"--model", "m", "--method", "reuse"}, ""},
		{"cacheclip with aux and params", []string{"--model", "m", "--aux", "a", "--ratio", "0.3", "--method-param", "window=4"}, ""},
		{"no model", []string{"--method", "reuse"}, "model: required"},
		{"ratio", []string{"--model", "m", "--method", "full", "--ratio", "2"}, "ratio: 2 is not in [0, 1]"},
		{"cacheclip without aux", []string{"--model", "m"}, "aux: method cacheclip needs"},
		{"device", []string{"--model", "m", "--method", "reuse", "--device", ""}, "device: empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("answer", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			sf := RegisterEngineFlags(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			s, err := sf.ResolveEngine()
			if c.want == "" {
				if err != nil {
					t.Fatalf("valid engine flags: %v", err)
				}
				if s.Model != "m" {
					t.Errorf("model %q, want m", s.Model)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want a config error naming %q", err, c.want)
			}
			if strings.Contains(err.Error(), "questions") || strings.Contains(err.Error(), "out:") {
				t.Errorf("error %v names a batch setting the engine does not read", err)
			}
		})
	}
}
