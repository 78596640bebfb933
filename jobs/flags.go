package jobs

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"cacheclip/methods"
)

// specFlag is one command-line flag of `cacheclip run`. This table is the one
// place flag names live; examples_test checks the shipped deployments against it.
type specFlag struct {
	name  string
	usage string
	// set parses the flag's text into the spec.
	set func(s *Spec, v string) error
	// isBool makes the flag usable without a value (--write-through).
	isBool bool
}

func str(dst func(*Spec) *string) func(*Spec, string) error {
	return func(s *Spec, v string) error { *dst(s) = v; return nil }
}

func integer(dst func(*Spec) *int) func(*Spec, string) error {
	return func(s *Spec, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want an integer: %w", err)
		}
		*dst(s) = n
		return nil
	}
}

// WeightsUsage is the help of --weights, on every command that loads a model.
const WeightsUsage = "a .gguf model's quantized matrices: native (kept in their Q4_0/Q4_1/Q8_0 blocks, other types widened to f32), native-q8 (native, and decode rounds activations to 8 bits for integer dot products: llama.cpp's numerics, faster), f32 (all widened at load) or auto (native where the CPU has the AVX-512 quantized kernels, else f32) (default auto)"

var specFlags = []specFlag{
	{name: "questions", usage: "questions Parquet file (query_id, question, chunk_ids, ...)", set: str(func(s *Spec) *string { return &s.Questions })},
	{name: "corpus", usage: "corpus Parquet file (chunk_id, text)", set: str(func(s *Spec) *string { return &s.Corpus })},
	{name: "store", usage: "KV shard store directory, or s3://bucket/prefix (endpoint and credentials from AWS_* variables)", set: str(func(s *Spec) *string { return &s.Store })},
	{name: "store-cache", usage: "local disk tier in front of an s3:// store", set: str(func(s *Spec) *string { return &s.StoreCache })},
	{name: "store-cache-mib", usage: "bound of the local tier in MiB (0: unbounded)", set: integer(func(s *Spec) *int { return &s.StoreCacheMiB })},
	{name: "model", usage: "primary model directory", set: str(func(s *Spec) *string { return &s.Model })},
	{name: "aux", usage: "auxiliary model directory (method cacheclip)", set: str(func(s *Spec) *string { return &s.Aux })},
	{name: "method", usage: methods.Default().Usage(), set: str(func(s *Spec) *string { return &s.Method })},
	{name: "ratio", usage: "recompute ratio in [0,1] (methods that take one)", set: func(s *Spec, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("want a number: %w", err)
		}
		s.Ratio = f
		return nil
	}},
	{name: "method-param", usage: methods.Default().ParamUsage(), set: func(s *Spec, v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("want key=value, got %q", v)
		}
		if s.MethodParams == nil {
			s.MethodParams = map[string]string{}
		}
		s.MethodParams[strings.TrimSpace(k)] = val
		return nil
	}},
	{name: "task", usage: "generate (free text) or label (score a fixed set of labels per row)", set: str(func(s *Spec) *string { return &s.Task })},
	{name: "labels", usage: "label job: comma-separated labels for rows without a choices value (a,b,c)", set: func(s *Spec, v string) error {
		s.Labels = strings.Split(v, ",")
		for i := range s.Labels {
			s.Labels[i] = strings.TrimSpace(s.Labels[i])
		}
		return nil
	}},
	{name: "label-score", usage: "label job: rank labels by the sum or mean of their token log-probabilities", set: str(func(s *Spec) *string { return &s.LabelScore })},
	{name: "label-prompt", usage: "label job: the question as shown to the model, with {question} and {choices}", set: str(func(s *Spec) *string { return &s.LabelPrompt })},
	{name: "template", usage: "prompt template: chatml, llama3, plain (default: the model's)", set: str(func(s *Spec) *string { return &s.Template })},
	{name: "weights", usage: WeightsUsage, set: str(func(s *Spec) *string { return &s.Weights })},
	{name: "out", usage: "output dataset directory", set: str(func(s *Spec) *string { return &s.Out })},
	{name: "shard", usage: "fan-out shard i/N (deterministic by query_id)", set: func(s *Spec, v string) error {
		sh, err := ParsePartition(v)
		if err != nil {
			return err
		}
		s.Partition = sh
		return nil
	}},
	{name: "batch-size", usage: "questions per batch", set: integer(func(s *Spec) *int { return &s.BatchSize })},
	{name: "plan-workers", usage: "workers tokenizing and laying out prompts", set: integer(func(s *Spec) *int { return &s.PlanWorkers })},
	{name: "load-workers", usage: "workers loading KV shards", set: integer(func(s *Spec) *int { return &s.LoadWorkers })},
	{name: "aux-workers", usage: "workers running the auxiliary model", set: integer(func(s *Spec) *int { return &s.AuxWorkers })},
	{name: "prefetch", usage: "batches queued ahead between stages", set: integer(func(s *Spec) *int { return &s.Prefetch })},
	{name: "host-cache-mb", usage: "host cache of mapped KV shards in MiB (0: a quarter of available memory, at most 4096)", set: integer(func(s *Spec) *int { return &s.HostCacheMB })},
	{name: "device-cache-mb", usage: "GPU chunk cache in MiB, part of the GPU memory plan (0: half of what the plan leaves free)", set: integer(func(s *Spec) *int { return &s.DeviceCacheMB })},
	{name: "reorder-window", usage: "questions reordered for chunk locality (0 = off)", set: integer(func(s *Spec) *int { return &s.ReorderWindow })},
	{name: "max-errors", usage: "error budget: a count (25), a fraction (0.01) or a percentage (1%)", set: func(s *Spec, v string) error {
		b, err := ParseErrorBudget(v)
		if err != nil {
			return err
		}
		s.MaxErrors = b
		return nil
	}},
	{name: "max-new-tokens", usage: "tokens generated per question when its row has no max_new_tokens", set: integer(func(s *Spec) *int { return &s.MaxNewTokens })},
	{name: "part-rows", usage: "rows per output part file", set: integer(func(s *Spec) *int { return &s.PartRows })},
	{name: "commit-interval", usage: "longest an answered row stays uncommitted (what a kill can lose), e.g. 10s", set: duration(func(s *Spec) *time.Duration { return &s.CommitInterval })},
	{name: "lease-timeout", usage: "another process may take over this shard after its writer is silent this long", set: duration(func(s *Spec) *time.Duration { return &s.LeaseTimeout })},
	{name: "write-through", usage: "build and store missing KV shards", isBool: true, set: func(s *Spec, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false: %w", err)
		}
		s.WriteThrough = b
		return nil
	}},
	{name: "diagnostics", usage: "also write answer_token_ids and first_token_logprobs (large: the whole vocabulary per row; for evaluation)", isBool: true, set: func(s *Spec, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false: %w", err)
		}
		s.Diagnostics = b
		return nil
	}},
	{name: "device", usage: "auto, cpu, cuda or cuda:N", set: str(func(s *Spec) *string { return &s.Device })},
	{name: "log-format", usage: "text or json", set: str(func(s *Spec) *string { return &s.LogFormat })},
	{name: "seed", usage: "random seed", set: func(s *Spec, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer: %w", err)
		}
		s.Seed = n
		return nil
	}},
}

func duration(field func(*Spec) *time.Duration) func(*Spec, string) error {
	return func(s *Spec, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*field(s) = d
		return nil
	}
}

// JobFlag is the flag naming a YAML/JSON job file.
const JobFlag = "job"

// FlagNames returns the names of every flag RegisterFlags defines, --job included.
func FlagNames() []string {
	names := []string{JobFlag}
	for _, f := range specFlags {
		names = append(names, f.name)
	}
	return names
}

// SpecFlags collects the flags given on a command line; Resolve merges them
// over the job file.
type SpecFlags struct {
	job     string
	pending []func(*Spec) error
	given   map[string]bool // flag names given on the command line
}

// Given reports whether the setting with this flag name (e.g. "max-errors")
// was set explicitly, by a flag or by its key in the job file, rather than
// left at its default. Call it after Resolve.
func (sf *SpecFlags) Given(flagName string) bool {
	if sf.given[flagName] {
		return true
	}
	if sf.job == "" {
		return false
	}
	b, err := os.ReadFile(sf.job)
	if err != nil {
		return false
	}
	var keys map[string]any
	if yaml.Unmarshal(b, &keys) != nil {
		return false
	}
	_, ok := keys[strings.ReplaceAll(flagName, "-", "_")]
	return ok
}

type flagValue struct {
	f   *specFlag
	sf  *SpecFlags
	cur string
}

func (v *flagValue) String() string { return v.cur }

func (v *flagValue) Set(s string) error {
	probe := DefaultSpec()
	if err := v.f.set(&probe, s); err != nil { // fail at parse time, naming the flag
		return err
	}
	v.cur = s
	f := v.f
	if v.sf.given == nil {
		v.sf.given = map[string]bool{}
	}
	v.sf.given[f.name] = true
	v.sf.pending = append(v.sf.pending, func(sp *Spec) error { return f.set(sp, s) })
	return nil
}

func (v *flagValue) IsBoolFlag() bool { return v.f.isBool }

type jobValue struct{ sf *SpecFlags }

func (v jobValue) String() string {
	if v.sf == nil {
		return ""
	}
	return v.sf.job
}
func (v jobValue) Set(s string) error { v.sf.job = s; return nil }

// engineFlags are the flags that choose a job's engine (models, template,
// method and its parameters, store, device, answer length): the part of a
// job that `cacheclip answer` shares with `cacheclip run`, under the same
// names. engineFields are their spec keys.
var (
	engineFlags  = []string{"model", "aux", "method", "ratio", "method-param", "template", "weights", "store", "write-through", "max-new-tokens", "device"}
	engineFields = []string{"model", "aux", "method", "ratio", "method_params", "template", "weights", "store", "write_through", "max_new_tokens", "device"}
)

// EngineFlagNames returns the names of the flags RegisterEngineFlags defines.
func EngineFlagNames() []string { return slices.Clone(engineFlags) }

// RegisterEngineFlags defines only the engine flags of RegisterFlags on fs
// (no --job): for commands that build an engine but run no batch job. After
// fs.Parse, call ResolveEngine.
func RegisterEngineFlags(fs *flag.FlagSet) *SpecFlags {
	sf := &SpecFlags{}
	for i := range specFlags {
		if f := &specFlags[i]; slices.Contains(engineFlags, f.name) {
			fs.Var(&flagValue{f: f, sf: sf}, f.name, f.usage)
		}
	}
	return sf
}

// ResolveEngine builds the spec from defaults and the flags, as Resolve does,
// and validates the settings the engine reads; the batch settings (questions,
// out, …) are left at their defaults and not checked. Errors are ConfigErrors.
func (sf *SpecFlags) ResolveEngine() (Spec, error) {
	s := DefaultSpec()
	for _, apply := range sf.pending {
		if err := apply(&s); err != nil {
			return s, configErr(err)
		}
	}
	err := s.Validate()
	var ce *ConfigError
	if err == nil || !errors.As(err, &ce) {
		return s, err
	}
	var keep []error
	for _, e := range unjoin(ce.Err) {
		var fe *FieldError
		if errors.As(e, &fe) && !slices.Contains(engineFields, fe.Field) {
			continue
		}
		keep = append(keep, e)
	}
	if len(keep) == 0 {
		return s, nil
	}
	return s, configErr(errors.Join(keep...))
}

// unjoin lists the errors joined in err (err itself when it joins none).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// RegisterFlags defines the job flags (see FlagNames) on fs. After fs.Parse,
// call Resolve: defaults, then the --job file, then each flag given explicitly,
// in command-line order, so a flag always wins over the file.
func RegisterFlags(fs *flag.FlagSet) *SpecFlags {
	sf := &SpecFlags{}
	fs.Var(jobValue{sf}, JobFlag, "YAML or JSON job file; flags given explicitly override it")
	for i := range specFlags {
		f := &specFlags[i]
		fs.Var(&flagValue{f: f, sf: sf}, f.name, f.usage)
	}
	return sf
}

// Resolve builds the spec from defaults, the job file and the flags, and
// validates it. Errors are ConfigErrors.
func (sf *SpecFlags) Resolve() (Spec, error) {
	s := DefaultSpec()
	if sf.job != "" {
		var err error
		if s, err = LoadSpecFile(sf.job); err != nil {
			return s, err
		}
	}
	for _, apply := range sf.pending {
		if err := apply(&s); err != nil {
			return s, configErr(err)
		}
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	return s, nil
}
