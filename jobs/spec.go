package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"cacheclip/methods"
)

// Tasks of a job.
const (
	TaskGenerate = "generate"
	TaskLabel    = "label"
)

// DefaultLabelPrompt shows a label job's choices after its question.
const DefaultLabelPrompt = "{question}\nChoices: {choices}"

// LabelQuestion is the question text of a label job's row: prompt with
// {question} and {choices} (the labels joined by ", ") substituted.
func LabelQuestion(prompt, question string, labels []string) string {
	return strings.NewReplacer("{question}", question, "{choices}", strings.Join(labels, ", ")).Replace(prompt)
}

// CheckLabels says what is wrong with a list of labels (empty or duplicate
// labels), or "" when nothing is.
func CheckLabels(labels []string) string {
	seen := make(map[string]int, len(labels))
	for i, l := range labels {
		if strings.TrimSpace(l) == "" {
			return fmt.Sprintf("label %d is empty", i)
		}
		if j, dup := seen[l]; dup {
			return fmt.Sprintf("label %q appears twice (at %d and %d)", l, j, i)
		}
		seen[l] = i
	}
	return ""
}

// templates are the prompt templates a job may name; "" means "from the model".
var templates = []string{"", "chatml", "llama3", "plain"}

// Spec is every setting of one job. Field names in YAML/JSON job files are the
// yaml tags; flag names are in docs/JOBS.md and flags.go.
type Spec struct {
	Questions string `yaml:"questions"` // questions Parquet file
	Corpus    string `yaml:"corpus"`    // corpus Parquet file (chunk_id, text)
	Store     string `yaml:"store"`     // KV shard store directory, or s3://bucket/prefix
	// StoreCache is the local disk tier in front of an s3:// store (default:
	// the user cache directory); StoreCacheMiB bounds it (0: unbounded).
	StoreCache    string `yaml:"store_cache"`
	StoreCacheMiB int    `yaml:"store_cache_mib"`
	Model         string `yaml:"model"` // primary model directory
	Aux           string `yaml:"aux"`   // auxiliary model directory (cacheclip)

	Method       string            `yaml:"method"`
	Ratio        float64           `yaml:"ratio"`         // recompute ratio in [0,1]
	MethodParams map[string]string `yaml:"method_params"` // method-specific, e.g. window: "8"
	Template     string            `yaml:"template"`
	// Weights is how a GGUF model's quantized matrices are held: "native"
	// (kept in their blocks, read by the quantized kernels), "native-q8"
	// (native, decode with 8-bit activations and integer dot products), "f32" (widened
	// at load) or "auto"/"" (native where the CPU has the SIMD quantized
	// kernels, else f32).
	Weights string `yaml:"weights"`

	// Task is "generate" (free text) or "label" (score a fixed set of labels per
	// row; docs/JOBS.md). Labels are a label job's labels for rows whose choices
	// column is null or absent; LabelScore ranks them by the "sum" or "mean" of
	// their token log-probabilities; LabelPrompt shows the choices in the
	// question ({question}, {choices}).
	Task        string   `yaml:"task"`
	Labels      []string `yaml:"labels"`
	LabelScore  string   `yaml:"label_score"`
	LabelPrompt string   `yaml:"label_prompt"`

	Out       string    `yaml:"out"`   // output dataset directory
	Partition Partition `yaml:"shard"` // "i/N"; 0/1 when not fanned out

	BatchSize     int `yaml:"batch_size"`     // questions per batch
	PlanWorkers   int `yaml:"plan_workers"`   // tokenize + layout
	LoadWorkers   int `yaml:"load_workers"`   // shard loading
	AuxWorkers    int `yaml:"aux_workers"`    // auxiliary scoring
	Prefetch      int `yaml:"prefetch"`       // batches queued ahead between stages
	ReorderWindow int `yaml:"reorder_window"` // questions reordered for chunk locality; 0 = off
	// HostCacheMB bounds the shard store's host cache of mapped shards and
	// DeviceCacheMB the GPU's chunk cache (part of the GPU memory plan), in
	// MiB; 0 takes a default from free memory (docs/JOBS.md).
	HostCacheMB   int `yaml:"host_cache_mb"`
	DeviceCacheMB int `yaml:"device_cache_mb"`

	MaxErrors      ErrorBudget   `yaml:"max_errors"`      // "25", "0.01", "1%"
	MaxNewTokens   int           `yaml:"max_new_tokens"`  // default when a row has none
	PartRows       int           `yaml:"part_rows"`       // rows per output part file
	CommitInterval time.Duration `yaml:"commit_interval"` // longest an answered row waits uncommitted
	LeaseTimeout   time.Duration `yaml:"lease_timeout"`   // another process may take over a shard silent this long
	WriteThrough   bool          `yaml:"write_through"`   // build and store missing shards
	Diagnostics    bool          `yaml:"diagnostics"`     // also write answer_token_ids, first_token_logprobs (evaluation; large)
	Device         string        `yaml:"device"`          // "auto", "cpu", "cuda", "cuda:1"
	LogFormat      string        `yaml:"log_format"`      // "text" or "json"
	Seed           int64         `yaml:"seed"`
}

// DefaultSpec returns the settings a job has before its file and flags apply.
func DefaultSpec() Spec {
	return Spec{
		Method:         methods.CacheClip,
		Task:           TaskGenerate,
		LabelScore:     "sum",
		LabelPrompt:    DefaultLabelPrompt,
		Ratio:          0.2,
		Partition:      whole,
		BatchSize:      8,
		PlanWorkers:    1,
		LoadWorkers:    2,
		AuxWorkers:     1,
		Prefetch:       2,
		MaxErrors:      ErrorBudget{Fraction: 0.01, IsFraction: true},
		MaxNewTokens:   64,
		PartRows:       1000,
		CommitInterval: 10 * time.Second,
		LeaseTimeout:   DefaultLeaseTimeout,
		WriteThrough:   true,
		Device:         "auto",
		LogFormat:      "text",
	}
}

// LoadSpecFile reads a YAML or JSON job file over the defaults. Unknown keys
// are errors (a misspelt key silently ignored would run the wrong job).
func LoadSpecFile(path string) (Spec, error) {
	s := DefaultSpec()
	b, err := os.ReadFile(path)
	if err != nil {
		return s, configErr(fmt.Errorf("job file: %w", err))
	}
	if err := decodeSpec(b, &s); err != nil {
		return s, configErr(fmt.Errorf("job file %s: %w", path, err))
	}
	return s, nil
}

// decodeSpec decodes YAML (JSON is a subset of YAML) strictly into s.
func decodeSpec(b []byte, s *Spec) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		if errors.Is(err, errEOF) {
			return nil
		}
		return err
	}
	return nil
}

// FieldError names the job setting that is wrong.
type FieldError struct {
	Field string // yaml key, e.g. "ratio"
	Msg   string
}

func (e *FieldError) Error() string { return "job setting " + e.Field + ": " + e.Msg }

// Validate checks the spec and returns every problem found (errors.Join of
// *FieldError), wrapped as a ConfigError.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if s.Questions == "" {
		bad("questions", "required (a Parquet file of questions)")
	}
	if s.Out == "" {
		bad("out", "required (the output dataset directory)")
	}
	if s.Model == "" {
		bad("model", "required (the primary model directory)")
	}
	if s.Corpus == "" && s.Store == "" {
		bad("corpus", "a corpus file or a shard store (store) is required")
	}
	if strings.HasPrefix(s.Store, "s3://") {
		if b, _, _ := strings.Cut(strings.TrimPrefix(s.Store, "s3://"), "/"); b == "" {
			bad("store", "%q has no bucket (want s3://bucket/prefix)", s.Store)
		}
	} else if s.StoreCache != "" {
		bad("store_cache", "a local tier is only used in front of an s3:// store (store is %q)", s.Store)
	}
	if s.StoreCacheMiB < 0 {
		bad("store_cache_mib", "%d is negative", s.StoreCacheMiB)
	}
	// The method, its ratio and its parameters are checked by the registry, so an
	// unknown key or a bad value stops the job here, before any model loads.
	if m, err := methods.Default().Resolve(s.Method, s.Ratio, s.MethodParams); err != nil {
		var me *methods.Error
		for _, e := range flatten(err) {
			if errors.As(e, &me) {
				bad(me.Field, "%s", me.Msg)
			} else {
				bad("method", "%v", e)
			}
		}
	} else if m.Entry.NeedsAux && s.Aux == "" {
		bad("aux", "method %s needs an auxiliary model directory", s.Method)
	}
	switch s.Task {
	case TaskGenerate:
		if len(s.Labels) > 0 {
			bad("labels", "given, but task is generate (set task: label to score them)")
		}
	case TaskLabel:
		if msg := CheckLabels(s.Labels); msg != "" {
			bad("labels", "%s", msg)
		}
		if !strings.Contains(s.LabelPrompt, "{question}") {
			bad("label_prompt", "%q does not contain {question}", s.LabelPrompt)
		}
	default:
		bad("task", "%q is not generate or label", s.Task)
	}
	if s.LabelScore != "sum" && s.LabelScore != "mean" {
		bad("label_score", "%q is not sum or mean", s.LabelScore)
	}
	if !slices.Contains([]string{"", "auto", "native", "native-q8", "f32"}, s.Weights) {
		bad("weights", "%q is not auto, native, native-q8 or f32", s.Weights)
	}
	if !slices.Contains(templates, s.Template) {
		bad("template", "%q is not one of chatml, llama3, plain (or empty for the model's own)", s.Template)
	}
	if err := s.Partition.norm().Validate(); err != nil {
		bad("shard", "%v", err)
	}
	for _, f := range []struct {
		name string
		v    int
		min  int
	}{
		{"batch_size", s.BatchSize, 1},
		{"plan_workers", s.PlanWorkers, 1},
		{"load_workers", s.LoadWorkers, 1},
		{"aux_workers", s.AuxWorkers, 1},
		{"prefetch", s.Prefetch, 0},
		{"reorder_window", s.ReorderWindow, 0},
		{"host_cache_mb", s.HostCacheMB, 0},
		{"device_cache_mb", s.DeviceCacheMB, 0},
		{"max_new_tokens", s.MaxNewTokens, 1},
		{"part_rows", s.PartRows, 1},
	} {
		if f.v < f.min {
			bad(f.name, "%d is below the minimum %d", f.v, f.min)
		}
	}
	if s.CommitInterval < 0 {
		bad("commit_interval", "%v is negative", s.CommitInterval)
	}
	if s.LeaseTimeout < 100*time.Millisecond {
		bad("lease_timeout", "%v is below the minimum 100ms (the heartbeat runs every quarter of it)", s.LeaseTimeout)
	}
	if s.LogFormat != "text" && s.LogFormat != "json" {
		bad("log_format", "%q is not text or json", s.LogFormat)
	}
	if s.Device == "" {
		bad("device", "empty (use auto, cpu, cuda or cuda:N)")
	}
	if len(errs) == 0 {
		return nil
	}
	return configErr(errors.Join(errs...))
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// EffectiveFileName is the name of the effective spec inside the output
// directory: job.effective.yaml, or job.effective-sIIIIofNNNN.yaml for a shard
// of a fanned-out job (so N workers never write the same file).
func EffectiveFileName(sh Partition) string {
	sh = sh.norm()
	if sh.N == 1 {
		return "job.effective.yaml"
	}
	return "job.effective-" + sh.Tag() + ".yaml"
}

// WriteEffective writes the spec as YAML into the output directory atomically
// and returns the file's path.
func (s *Spec) WriteEffective() (string, error) {
	if err := os.MkdirAll(s.Out, 0o755); err != nil {
		return "", fmt.Errorf("output dir %s: %w", s.Out, err)
	}
	b, err := yaml.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode effective job: %w", err)
	}
	hdr := "# Effective settings of this cacheclip job (defaults + job file + flags).\n"
	p := filepath.Join(s.Out, EffectiveFileName(s.Partition))
	if err := writeFileAtomic(p, append([]byte(hdr), b...)); err != nil {
		return "", err
	}
	return p, nil
}
