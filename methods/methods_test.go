package methods_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"cacheclip/methods"
)

func TestResolve(t *testing.T) {
	reg := methods.Default()
	cases := []struct {
		name   string
		method string
		ratio  float64
		params map[string]string
		fields []string // the fields the error names, in order; none: valid
		msg    string   // part of the error
	}{
		{"defaults", "cacheclip", 0.2, nil, nil, ""},
		{"every parameter", "cacheclip", 1, map[string]string{"reduce": "last", "window": "1", "min_count": "9", "aux_mode": "cached", "aux_template": ""}, nil, ""},
		{"ratio ignored without one", "reuse", 0.7, nil, nil, ""},
		{"ratio out of range without one", "full", 7, nil, []string{"ratio"}, "7 is not in [0, 1]"},
		{"unknown method", "magic", 0.2, nil, []string{"method"}, `"magic" is not one of full, reuse, ape, cacheblend, cacheclip`},
		{"ratio NaN", "cacheblend", math.NaN(), nil, []string{"ratio"}, "not in [0, 1]"},
		{"ratio above 1", "cacheclip", 1.01, nil, []string{"ratio"}, "not in [0, 1]"},
		{"unknown key", "cacheclip", 0.2, map[string]string{"windw": "8"}, []string{"method_params.windw"}, "unknown parameter of method cacheclip"},
		{"key of a method without any", "full", 0, map[string]string{"window": "8"}, []string{"method_params.window"}, "it takes none"},
		{"enum", "cacheclip", 0.2, map[string]string{"reduce": "avg"}, []string{"method_params.reduce"}, "one of mean, max, last"},
		{"int below range", "cacheclip", 0.2, map[string]string{"window": "0"}, []string{"method_params.window"}, "an integer in [1, inf)"},
		{"int syntax", "cacheblend", 0.2, map[string]string{"check_layer": "one"}, []string{"method_params.check_layer"}, "not an integer"},
		{"float open bound", "ape", 0, map[string]string{"temp": "0"}, []string{"method_params.temp"}, "a number in (0, inf)"},
		{"float inf", "ape", 0, map[string]string{"scale": "+Inf"}, []string{"method_params.scale"}, "not a finite number"},
		{"several, sorted", "cacheclip", 2, map[string]string{"window": "x", "aux_mode": "warm"}, []string{"ratio", "method_params.aux_mode", "method_params.window"}, "one of fresh, cached"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := reg.Resolve(c.method, c.ratio, c.params)
			if len(c.fields) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if err := cfg.Check(); err != nil {
					t.Errorf("Check of a resolved config: %v", err)
				}
				for _, p := range cfg.Entry.Params {
					if _, ok := cfg.Values[p.Name]; !ok {
						t.Errorf("parameter %s has no value", p.Name)
					}
				}
				return
			}
			var fields []string
			var es methods.Errors
			var e *methods.Error
			switch {
			case errors.As(err, &es):
				for _, x := range es {
					fields = append(fields, x.Field)
				}
			case errors.As(err, &e):
				fields = []string{e.Field}
			default:
				t.Fatalf("err = %v, want *methods.Error", err)
			}
			if strings.Join(fields, ",") != strings.Join(c.fields, ",") || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v (fields %v), want fields %v and %q", err, fields, c.fields, c.msg)
			}
		})
	}
}

func TestResolvedValuesAndBudget(t *testing.T) {
	cfg, err := methods.Default().Resolve("cacheclip", 0.25, map[string]string{"window": "16", "reduce": "max"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Values.Int("window") != 16 || cfg.Values.Int("min_count") != 5 || cfg.Values.String("reduce") != "max" || cfg.Values.String("aux_mode") != "cached" {
		t.Errorf("values %v", cfg.Values)
	}
	if cfg.Budget(10) != 3 || cfg.Budget(0) != 0 {
		t.Errorf("budget of 0.25: %d of 10, %d of 0", cfg.Budget(10), cfg.Budget(0))
	}
	full, _ := methods.Default().Resolve("full", 0.25, nil)
	reuse, _ := methods.Default().Resolve("reuse", 0.25, nil)
	if full.Budget(10) != 10 || reuse.Budget(10) != 0 || full.Ratio != 0 {
		t.Errorf("full budget %d (ratio %v), reuse budget %d", full.Budget(10), full.Ratio, reuse.Budget(10))
	}
	for _, c := range []struct {
		r    float64
		n    int
		want int
	}{{0.2, 5, 1}, {0.2, 6, 2}, {0, 9, 0}, {1, 9, 9}, {0.1, 1000, 100}, {0.3, 10, 3}} {
		if got := methods.Budget(c.r, c.n); got != c.want {
			t.Errorf("Budget(%v, %d) = %d, want %d", c.r, c.n, got, c.want)
		}
	}
	// Check catches values set by hand with the wrong type or out of range.
	cfg.Values["window"] = 8.0
	cfg.Values["min_count"] = 0
	if err := cfg.Check(); err == nil || !strings.Contains(err.Error(), "window") || !strings.Contains(err.Error(), "min_count") {
		t.Errorf("Check = %v, want window (type) and min_count (range)", err)
	}
}

func TestUsageNamesEveryParameter(t *testing.T) {
	reg := methods.Default()
	u, pu := reg.Usage(), reg.ParamUsage()
	for _, e := range reg.Entries() {
		if !strings.Contains(u, e.Name) {
			t.Errorf("--method help lacks %s", e.Name)
		}
		for _, p := range e.Params {
			if !strings.Contains(pu, e.Name+" "+p.Name+"="+p.Default) {
				t.Errorf("--method-param help lacks %s %s", e.Name, p.Name)
			}
		}
	}
}
