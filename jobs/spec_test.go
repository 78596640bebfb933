package jobs

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"cacheclip/loader"
)

func TestParsePartition(t *testing.T) {
	cases := []struct {
		in      string
		want    Partition
		wantErr string
	}{
		{"", whole, ""},
		{"0/1", Partition{0, 1}, ""},
		{"3/8", Partition{3, 8}, ""},
		{" 7 / 8 ", Partition{7, 8}, ""},
		{"8/8", Partition{}, "index must be in 0..7"},
		{"-1/8", Partition{}, "index must be in"},
		{"1/0", Partition{}, "N must be in"},
		{"3", Partition{}, "want i/N"},
		{"a/8", Partition{}, "index"},
		{"1/b", Partition{}, "count"},
	}
	for _, c := range cases {
		got, err := ParsePartition(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParsePartition(%q) err = %v, want containing %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParsePartition(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	if tag := (Partition{3, 8}).Tag(); tag != "s0003of0008" {
		t.Errorf("Tag = %q", tag)
	}
}

func TestPartitionOf(t *testing.T) {
	const n = 5
	counts := make([]int, n)
	for i := 0; i < 5000; i++ {
		id := "q-" + strconv.Itoa(i)
		s := PartitionOf(id, n)
		if s < 0 || s >= n {
			t.Fatalf("PartitionOf out of range: %d", s)
		}
		if s != PartitionOf(id, n) {
			t.Fatal("PartitionOf not deterministic")
		}
		owners := 0
		for k := 0; k < n; k++ {
			if (Partition{k, n}).Owns(id) {
				owners++
			}
		}
		if owners != 1 {
			t.Fatalf("%s owned by %d shards", id, owners)
		}
		counts[s]++
	}
	for s, c := range counts {
		if c < 800 || c > 1200 { // 1000 expected; xxh3 spreads evenly
			t.Errorf("shard %d got %d of 5000 ids", s, c)
		}
	}
	// The hash is fixed forever: changing it would reshuffle resumed fan-outs.
	if got := PartitionOf("q-000001", 8); got != PartitionOf("q-000001", 8) || PartitionOf("anything", 1) != 0 {
		t.Error("PartitionOf unstable")
	}
}

func TestErrorBudget(t *testing.T) {
	cases := []struct {
		in           string
		failed, seen int64
		exceeded     bool
		wantErr      bool
	}{
		{"0", 0, 100, false, false},
		{"0", 1, 100, true, false},
		{"25", 25, 100, false, false},
		{"25", 26, 1000, true, false},
		{"0.01", 1, 100, false, false},
		{"0.01", 2, 100, true, false},
		{"1%", 10, 1000, false, false},
		{"1%", 11, 1000, true, false},
		{"100%", 1000, 1000, false, false},
		{"1.0", 5, 5, false, false},
		{"-1", 0, 0, false, true},
		{"150%", 0, 0, false, true},
		{"1.5", 0, 0, false, true},
		{"lots", 0, 0, false, true},
		{"", 0, 0, false, true},
	}
	for _, c := range cases {
		b, err := ParseErrorBudget(c.in)
		if c.wantErr {
			if err == nil {
				t.Errorf("ParseErrorBudget(%q) accepted", c.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseErrorBudget(%q): %v", c.in, err)
			continue
		}
		if got := b.Exceeded(c.failed, c.seen); got != c.exceeded {
			t.Errorf("%q.Exceeded(%d, %d) = %v", c.in, c.failed, c.seen, got)
		}
		back, err := ParseErrorBudget(b.String())
		if err != nil || back != b {
			t.Errorf("round trip %q -> %q -> %+v, %v", c.in, b.String(), back, err)
		}
	}
	b, _ := ParseErrorBudget("1%")
	if b.ExceededEarly(5, 1000) || !b.ExceededEarly(11, 1000) {
		t.Error("ExceededEarly wrong for 1%")
	}
}

func validSpec() Spec {
	s := DefaultSpec()
	s.Questions, s.Corpus, s.Model, s.Aux, s.Out = "q.parquet", "c.parquet", "m", "a", "out"
	return s
}

func TestValidateNamesField(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Spec)
		field string
	}{
		{"no questions", func(s *Spec) { s.Questions = "" }, "questions"},
		{"no out", func(s *Spec) { s.Out = "" }, "out"},
		{"no model", func(s *Spec) { s.Model = "" }, "model"},
		{"no corpus nor store", func(s *Spec) { s.Corpus, s.Store = "", "" }, "corpus"},
		{"bad method", func(s *Spec) { s.Method = "magic" }, "method"},
		{"cacheclip needs aux", func(s *Spec) { s.Aux = "" }, "aux"},
		{"ratio high", func(s *Spec) { s.Ratio = 1.5 }, "ratio"},
		{"ratio negative", func(s *Spec) { s.Ratio = -0.1 }, "ratio"},
		{"batch", func(s *Spec) { s.BatchSize = 0 }, "batch_size"},
		{"workers", func(s *Spec) { s.LoadWorkers = 0 }, "load_workers"},
		{"prefetch", func(s *Spec) { s.Prefetch = -1 }, "prefetch"},
		{"host cache", func(s *Spec) { s.HostCacheMB = -1 }, "host_cache_mb"},
		{"device cache", func(s *Spec) { s.DeviceCacheMB = -5 }, "device_cache_mb"},
		{"log format", func(s *Spec) { s.LogFormat = "xml" }, "log_format"},
		{"template", func(s *Spec) { s.Template = "alpaca" }, "template"},
		{"weights", func(s *Spec) { s.Weights = "q4" }, "weights"},
		{"shard", func(s *Spec) { s.Partition = Partition{9, 8} }, "shard"},
		{"max new tokens", func(s *Spec) { s.MaxNewTokens = 0 }, "max_new_tokens"},
		{"unknown method param", func(s *Spec) { s.MethodParams = map[string]string{"windw": "8"} }, "method_params.windw"},
		{"param of another method", func(s *Spec) { s.MethodParams = map[string]string{"check_layer": "2"} }, "method_params.check_layer"},
		{"bad reduce", func(s *Spec) { s.MethodParams = map[string]string{"reduce": "avg"} }, "method_params.reduce"},
		{"window 0", func(s *Spec) { s.MethodParams = map[string]string{"window": "0"} }, "method_params.window"},
		{"window not an integer", func(s *Spec) { s.MethodParams = map[string]string{"window": "8.5"} }, "method_params.window"},
		{"ape temp 0", func(s *Spec) { s.Method, s.MethodParams = "ape", map[string]string{"temp": "0"} }, "method_params.temp"},
		{"s3 store without bucket", func(s *Spec) { s.Store = "s3:///kv" }, "store"},
		{"tier without s3 store", func(s *Spec) { s.Store, s.StoreCache = "/kv", "/tier" }, "store_cache"},
		{"negative tier bound", func(s *Spec) { s.Store, s.StoreCacheMiB = "s3://b/kv", -1 }, "store_cache_mib"},
		{"task", func(s *Spec) { s.Task = "classify" }, "task"},
		{"labels on a generate job", func(s *Spec) { s.Labels = []string{"a", "b"} }, "labels"},
		{"empty label", func(s *Spec) { s.Task, s.Labels = TaskLabel, []string{"a", " "} }, "labels"},
		{"duplicate label", func(s *Spec) { s.Task, s.Labels = TaskLabel, []string{"a", "b", "a"} }, "labels"},
		{"label score", func(s *Spec) { s.Task, s.LabelScore = TaskLabel, "max" }, "label_score"},
		{"label prompt", func(s *Spec) { s.Task, s.LabelPrompt = TaskLabel, "Pick one of {choices}" }, "label_prompt"},
	}
	for _, c := range cases {
		s := validSpec()
		c.edit(&s)
		err := s.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: err = %v, want field %s", c.name, err, c.field)
		}
		if !IsConfigError(err) {
			t.Errorf("%s: not a ConfigError", c.name)
		}
	}
	s := validSpec()
	if err := s.Validate(); err != nil {
		t.Fatalf("valid spec rejected: %v", err)
	}
	s.Method, s.Aux = "full", ""
	if err := s.Validate(); err != nil {
		t.Errorf("full without aux rejected: %v", err)
	}
	s.Store, s.StoreCache, s.StoreCacheMiB = "s3://bucket/team/kv", "/ssd/tier", 1024
	if err := s.Validate(); err != nil {
		t.Errorf("s3 store with a tier rejected: %v", err)
	}
}

// The job spec checks weights modes before any work without importing the
// loader (which pulls in the engine): its list must stay the loader's.
func TestWeightsModesAreTheLoaders(t *testing.T) {
	for _, mode := range []string{"", loader.WeightsAuto, loader.WeightsNative, loader.WeightsNativeQ8, loader.WeightsF32, "q4", "native-q4", "F32"} {
		s := validSpec()
		s.Weights = mode
		specErr, loaderErr := s.Validate(), loader.CheckWeights(mode)
		if (specErr == nil) != (loaderErr == nil) {
			t.Errorf("weights %q: spec says %v, loader says %v", mode, specErr, loaderErr)
		}
	}
}

// A method parameter's error names the key, what is wrong and what is allowed,
// and every bad key is reported at once.
func TestValidateMethodParamMessages(t *testing.T) {
	s := validSpec()
	s.MethodParams = map[string]string{"reduce": "avg", "windw": "8", "min_count": "-1"}
	err := s.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a FieldError", err)
	}
	for _, want := range []string{
		`method_params.reduce: "avg" is not one of mean, max, last`,
		"method_params.windw: unknown parameter of method cacheclip (its parameters: reduce, window, min_count, aux_template, aux_mode, aux_boundary, budget)",
		"method_params.min_count: -1 is not an integer in [1, inf)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	s.MethodParams = map[string]string{"reduce": "max", "window": "16", "min_count": "3", "aux_mode": "cached", "aux_template": "chatml"}
	if err := s.Validate(); err != nil {
		t.Errorf("valid parameters rejected: %v", err)
	}
}

func TestSpecFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	yml := filepath.Join(dir, "job.yaml")
	os.WriteFile(yml, []byte(`
questions: /data/q.parquet
corpus: /data/c.parquet
model: /models/qwen
aux: /models/smol
method: cacheblend
ratio: 0.15
method_params: {check_layer: 2, rank_by: k}
out: /tmp/out
shard: 2/4
batch_size: 16
max_errors: 25
commit_interval: 30s
write_through: false
diagnostics: true
`), 0o644)
	jsn := filepath.Join(dir, "job.json")
	os.WriteFile(jsn, []byte(`{"questions":"q.parquet","corpus":"c.parquet","model":"m","method":"full","out":"o","max_errors":"2%","shard":"0/2"}`), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("questions: q\nbatchsize: 4\n"), 0o644)
	badType := filepath.Join(dir, "badtype.yaml")
	os.WriteFile(badType, []byte("questions: q\nratio: lots\n"), 0o644)

	cases := []struct {
		name    string
		args    []string
		check   func(t *testing.T, s Spec)
		wantErr string
	}{
		{"yaml only", []string{"--job", yml}, func(t *testing.T, s Spec) {
			if s.Method != "cacheblend" || s.Ratio != 0.15 || s.Partition != (Partition{2, 4}) || s.BatchSize != 16 ||
				s.MaxErrors != (ErrorBudget{Count: 25}) || s.CommitInterval != 30*time.Second || s.WriteThrough || !s.Diagnostics ||
				s.MethodParams["check_layer"] != "2" || s.MethodParams["rank_by"] != "k" || s.LoadWorkers != 2 {
				t.Errorf("got %+v", s)
			}
		}, ""},
		{"flags win over file, wherever --job is", []string{"--ratio", "0.3", "--job", yml, "--shard", "3/4", "--write-through", "--max-errors", "1%", "--method-param", "check_layer=5"}, func(t *testing.T, s Spec) {
			if s.Ratio != 0.3 || s.Partition != (Partition{3, 4}) || !s.WriteThrough || !s.MaxErrors.IsFraction || s.MethodParams["check_layer"] != "5" || s.BatchSize != 16 {
				t.Errorf("got %+v", s)
			}
		}, ""},
		{"flag turns diagnostics off over the file", []string{"--job", yml, "--diagnostics=false"}, func(t *testing.T, s Spec) {
			if s.Diagnostics {
				t.Errorf("diagnostics still on: %+v", s)
			}
		}, ""},
		{"diagnostics flag without a value", []string{"--questions", "q", "--corpus", "c", "--model", "m", "--aux", "a", "--out", "o", "--diagnostics"}, func(t *testing.T, s Spec) {
			if !s.Diagnostics {
				t.Errorf("--diagnostics did not turn it on: %+v", s)
			}
		}, ""},
		{"bad diagnostics flag", []string{"--diagnostics=maybe"}, nil, "diagnostics"},
		{"label job flags", []string{"--job", yml, "--task", "label", "--labels", "yes, no,maybe", "--label-score", "mean"}, func(t *testing.T, s Spec) {
			if s.Task != TaskLabel || strings.Join(s.Labels, "|") != "yes|no|maybe" || s.LabelScore != "mean" || s.LabelPrompt != DefaultLabelPrompt {
				t.Errorf("got task %q labels %q score %q prompt %q", s.Task, s.Labels, s.LabelScore, s.LabelPrompt)
			}
		}, ""},
		{"duplicate labels stop the job", []string{"--job", yml, "--task", "label", "--labels", "a,b,a"}, nil, "labels"},
		{"json file", []string{"--job", jsn}, func(t *testing.T, s Spec) {
			if s.Method != "full" || s.MaxErrors.Fraction != 0.02 || s.Partition != (Partition{0, 2}) || s.Diagnostics {
				t.Errorf("got %+v", s)
			}
		}, ""},
		{"flags only", []string{"--questions", "q", "--corpus", "c", "--model", "m", "--aux", "a", "--out", "o"}, func(t *testing.T, s Spec) {
			if s.Method != "cacheclip" || s.Ratio != 0.2 || s.Diagnostics {
				t.Errorf("defaults lost: %+v", s)
			}
		}, ""},
		{"unknown key in file", []string{"--job", bad}, nil, "batchsize"},
		{"wrong type in file", []string{"--job", badType}, nil, "lots"},
		{"missing file", []string{"--job", filepath.Join(dir, "nope.yaml")}, nil, "nope.yaml"},
		{"invalid after merge", []string{"--job", yml, "--ratio", "2"}, nil, "ratio"},
		{"bad flag value", []string{"--shard", "9/2"}, nil, "shard"},
		{"bad int flag", []string{"--batch-size", "many"}, nil, "batch-size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			sf := RegisterFlags(fs)
			err := fs.Parse(c.args)
			var s Spec
			if err == nil {
				s, err = sf.Resolve()
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, s)
		})
	}
}

func TestWriteEffectiveRoundTrips(t *testing.T) {
	s := validSpec()
	s.Out = filepath.Join(t.TempDir(), "out")
	s.MethodParams = map[string]string{"window": "8"}
	s.MaxErrors = ErrorBudget{Fraction: 0.05, IsFraction: true}
	s.Partition = Partition{1, 3}
	s.Diagnostics = true
	p, err := s.WriteEffective()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "job.effective-s0001of0003.yaml" {
		t.Errorf("name %s", p)
	}
	back, err := LoadSpecFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := yaml.Marshal(s)
	b2, _ := yaml.Marshal(back)
	if string(b1) != string(b2) {
		t.Errorf("round trip differs:\n%s\n---\n%s", b1, b2)
	}
	if !back.Diagnostics || !strings.Contains(string(b1), "diagnostics: true") {
		t.Errorf("diagnostics not in the effective settings:\n%s", b1)
	}
	ents, _ := os.ReadDir(s.Out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
	s.Partition = whole
	if p, _ := s.WriteEffective(); filepath.Base(p) != "job.effective.yaml" {
		t.Errorf("unsharded name %s", p)
	}
}

func TestFlagNamesCoverBrief(t *testing.T) {
	names := map[string]bool{}
	for _, n := range FlagNames() {
		names[n] = true
	}
	for _, n := range []string{"questions", "corpus", "store", "model", "aux", "method", "ratio", "out", "shard", "diagnostics", "job"} {
		if !names[n] {
			t.Errorf("flag --%s missing", n)
		}
	}
}

func TestExitCodeOf(t *testing.T) {
	budget := ErrorBudget{Count: 2}
	cases := []struct {
		name        string
		err         error
		interrupted bool
		s           *Stats
		want        ExitCode
	}{
		{"clean", nil, false, &Stats{Rows: 10, OK: 10}, ExitOK},
		{"partial", nil, false, &Stats{Rows: 10, OK: 8, Errors: 2}, ExitPartial},
		{"duplicates are partial", nil, false, &Stats{Rows: 10, OK: 10, Duplicates: 1}, ExitPartial},
		{"over budget", nil, false, &Stats{Rows: 10, OK: 7, Errors: 3}, ExitBudgetExceeded},
		{"budget error", errors.Join(ErrBudgetExceeded), false, nil, ExitBudgetExceeded},
		{"config", configErr(errors.New("x")), false, nil, ExitBadConfig},
		{"interrupted", nil, true, nil, ExitInterrupted},
		{"internal", errors.New("disk on fire"), false, nil, ExitInternal},
	}
	for _, c := range cases {
		if got := ExitCodeOf(c.err, c.interrupted, c.s, budget); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// Given tells a setting the user chose (flag or job file key) from a default,
// which is what lets a rerun change the error budget only on purpose.
func TestSpecFlagsGiven(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	os.WriteFile(job, []byte("questions: q\nmodel: m\nout: o\ncorpus: c\nmethod: full\nmax_errors: 5%\n"), 0o644)
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--questions", "q", "--model", "m", "--out", "o", "--corpus", "c", "--method", "full"}, false},
		{[]string{"--questions", "q", "--model", "m", "--out", "o", "--corpus", "c", "--method", "full", "--max-errors", "1%"}, true},
		{[]string{"--job", job}, true},
	} {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		sf := RegisterFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if _, err := sf.Resolve(); err != nil {
			t.Fatal(err)
		}
		if got := sf.Given("max-errors"); got != c.want {
			t.Errorf("%v: Given(max-errors) = %v, want %v", c.args, got, c.want)
		}
		if sf.Given("ratio") {
			t.Errorf("%v: ratio reported as given", c.args)
		}
	}
}
