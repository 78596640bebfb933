// Package methods is the one table of prefill methods: each method's name, how
// it spends its recompute budget, whether it takes a ratio, and its typed
// parameters with defaults, ranges, allowed values and help. Job validation,
// the prefill engine, the evaluation, the report, every command's help and
// docs/METHODS.md read it, so a method or a parameter is written down once.
//
// The package imports nothing of this repository: jobs (which must validate a
// job before any model is loaded) and prefill (which runs the methods) both
// depend on it.
package methods

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Method names of the built-in methods.
const (
	Full       = "full"
	Reuse      = "reuse"
	APE        = "ape"
	CacheBlend = "cacheblend"
	CacheClip  = "cacheclip"
)

// Kind is how a method recomputes: the prefill engine has one code path per
// kind, so a new method of an existing kind needs no engine change.
type Kind int

const (
	// Fresh computes every token of the prompt (full prefill).
	Fresh Kind = iota
	// Reused reuses every chunk cache as stored and recomputes no context token;
	// AttnGroups says whether the question attends to the chunks as a separate
	// group (APE).
	Reused
	// Prune runs every context token through the layers up to a check layer and
	// keeps the most deviating ones (CacheBlend).
	Prune
	// Selected recomputes a set of context tokens chosen before the forward call:
	// by the auxiliary model (NeedsAux) or by the entry's Select.
	Selected
)

// Chunks is what a Select function sees of a prompt: the number of tokens of
// each retrieved chunk, in prompt order. Selected indices count over the
// concatenated chunk tokens.
type Chunks struct {
	Lens []int
}

// Total is the number of context tokens.
func (c Chunks) Total() int {
	n := 0
	for _, l := range c.Lens {
		n += l
	}
	return n
}

// SelectFunc chooses the context tokens a Selected method recomputes: strictly
// ascending indices into the concatenated chunk tokens. budget is the method's
// Budget (0 for a method without a ratio, which chooses its own count).
type SelectFunc func(ctx context.Context, c Chunks, budget int, v Values) ([]int, error)

// Entry is one method of the registry.
type Entry struct {
	Name string
	Kind Kind
	// TakesRatio: the method recomputes ⌈r·N⌉ context tokens at ratio r; without
	// it the ratio of a job is ignored for this method.
	TakesRatio bool
	// NeedsAux: the selection comes from the auxiliary model (an aux directory
	// is required).
	NeedsAux bool
	// AttnGroups: the question attends to the chunks as a separate softmax group
	// (APE's temperature and scale parameters).
	AttnGroups bool
	// Select chooses the tokens of a Selected method that needs no auxiliary model.
	Select SelectFunc
	Params []Param
	Help   string
}

// Type is the type of a parameter's value.
type Type int

const (
	Int Type = iota
	Float
	Enum // one of Param.Allowed
)

func (t Type) String() string {
	return [...]string{"int", "float", "enum"}[t]
}

// Param is one typed method parameter. Min and Max bound Int and Float values
// (inclusive, or exclusive where MinOpen/MaxOpen); NaN means unbounded.
type Param struct {
	Name    string
	Type    Type
	Default string
	Min     float64
	Max     float64
	MinOpen bool
	MaxOpen bool
	Allowed []string // Enum: every allowed value ("" may be one)
	Help    string
}

var unbounded = math.NaN()

// Registry is a set of methods in display order. Default returns the built-in
// one; a test adds a method with With.
type Registry struct {
	entries []Entry
}

// Default returns the registry of the built-in methods.
func Default() *Registry {
	return &Registry{entries: builtin()}
}

// builtin is the table. Defaults follow each method's paper or reference code;
// docs/METHODS.md is checked against it.
func builtin() []Entry {
	return []Entry{
		{Name: Full, Kind: Fresh, Help: "prefill every token fresh: the exact reference"},
		{Name: Reuse, Kind: Reused, Help: "reuse every chunk cache as stored, recompute only the question"},
		{Name: APE, Kind: Reused, AttnGroups: true,
			Help: "reuse, with the question's attention over the chunks as its own group (APE)",
			Params: []Param{
				{Name: "temp", Type: Float, Default: "0.9", Min: 0, MinOpen: true, Max: unbounded, Help: "attention temperature T over the chunks"},
				{Name: "scale", Type: Float, Default: "0.9", Min: 0, MinOpen: true, Max: unbounded, Help: "scaling factor S of the chunks' group"},
			}},
		{Name: CacheBlend, Kind: Prune, TakesRatio: true,
			Help: "recompute the tokens whose fresh K or V deviates most at a check layer (CacheBlend)",
			Params: []Param{
				{Name: "check_layer", Type: Int, Default: "1", Min: 0, Max: unbounded, Help: "layer where tokens are ranked (below the model's depth)"},
				{Name: "rank_by", Type: Enum, Default: "v", Allowed: []string{"v", "k"}, Help: "rank by the deviation of v (the paper) or k (LMCache's code)"},
			}},
		{Name: CacheClip, Kind: Selected, TakesRatio: true, NeedsAux: true,
			Help: "recompute the tokens the auxiliary model's attention ranks highest, grouped by sliding window (CacheClip)",
			Params: []Param{
				{Name: "reduce", Type: Enum, Default: "mean", Allowed: []string{"mean", "max", "last"}, Help: "how scores are reduced over the question's tokens"},
				{Name: "window", Type: Int, Default: "8", Min: 1, Max: unbounded, Help: "sliding window w of the grouping"},
				{Name: "min_count", Type: Int, Default: "5", Min: 1, Max: unbounded, Help: "candidates m in a window that make it recomputed whole"},
				{Name: "aux_template", Type: Enum, Default: "", Allowed: []string{"", "chatml", "llama3", "plain"}, Help: "auxiliary model's prompt template (empty: its own)"},
				{Name: "aux_mode", Type: Enum, Default: "cached", Allowed: []string{"fresh", "cached", "boundary"}, Help: "fresh: the auxiliary computes the whole prompt; cached: it reuses its own chunk caches from the store (the default: as good or better at a fraction of the cost, docs/EVALUATION.md); boundary: cached, then recomputes the first aux_boundary tokens of every chunk after the first"},
				{Name: "aux_boundary", Type: Int, Default: "32", Min: 1, Max: unbounded, Help: "tokens recomputed at the start of each chunk after the first in aux_mode boundary"},
				{Name: "budget", Type: Enum, Default: "fixed", Allowed: []string{"fixed", "adaptive"}, Help: "fixed: ⌈r·N⌉ tokens per question; adaptive: a batch's Σ⌈r·N⌉ spread over its questions by how spread the auxiliary's attention is (docs/METHODS.md)"},
			}},
	}
}

// With returns a copy of the registry with e added at the end (or replacing
// the entry of the same name).
func (r *Registry) With(e Entry) *Registry {
	out := &Registry{entries: slices.Clone(r.entries)}
	if i := slices.IndexFunc(out.entries, func(x Entry) bool { return x.Name == e.Name }); i >= 0 {
		out.entries[i] = e
	} else {
		out.entries = append(out.entries, e)
	}
	return out
}

// Names lists the method names in display order.
func (r *Registry) Names() []string {
	out := make([]string, len(r.entries))
	for i, e := range r.entries {
		out[i] = e.Name
	}
	return out
}

// Entries returns the methods in display order.
func (r *Registry) Entries() []Entry { return slices.Clone(r.entries) }

// Lookup returns the named method.
func (r *Registry) Lookup(name string) (*Entry, error) {
	for i := range r.entries {
		if r.entries[i].Name == name {
			e := r.entries[i]
			return &e, nil
		}
	}
	return nil, &Error{Field: "method", Msg: fmt.Sprintf("%q is not one of %s", name, strings.Join(r.Names(), ", "))}
}

// Usage is the one-line help of a --method flag.
func (r *Registry) Usage() string {
	return "prefill method: " + strings.Join(r.Names(), ", ") + " (docs/METHODS.md)"
}

// ParamUsage is the help of a --method-param flag: every parameter by method.
func (r *Registry) ParamUsage() string {
	var b strings.Builder
	b.WriteString("method parameter key=value (repeatable):")
	for _, e := range r.entries {
		for _, p := range e.Params {
			fmt.Fprintf(&b, "\n  %s %s=%s (%s)", e.Name, p.Name, p.Default, p.Domain())
		}
	}
	return b.String()
}

// Error names the setting that is wrong: "method", "ratio" or
// "method_params.KEY".
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// CheckRatio is the one check of a recompute ratio: in [0, 1], not NaN.
func CheckRatio(r float64) error {
	if !(r >= 0 && r <= 1) {
		return &Error{Field: "ratio", Msg: fmt.Sprintf("%v is not in [0, 1]", r)}
	}
	return nil
}

// Budget is ⌈r·N⌉, the number of context tokens a method that takes a ratio
// recomputes out of n, so methods compare at equal budgets. A small epsilon
// keeps r·N that is an integer in exact arithmetic (0.2·5) from rounding up.
func Budget(ratio float64, n int) int {
	b := int(math.Ceil(ratio*float64(n) - 1e-9))
	return min(max(b, 0), n)
}

// Domain describes the values a parameter accepts, for help and errors.
func (p Param) Domain() string {
	switch p.Type {
	case Enum:
		q := make([]string, len(p.Allowed))
		for i, a := range p.Allowed {
			q[i] = strconv.Quote(a)
			if a != "" {
				q[i] = a
			}
		}
		return "one of " + strings.Join(q, ", ")
	}
	lo, hi := "[", "]"
	if p.MinOpen || math.IsNaN(p.Min) {
		lo = "("
	}
	if p.MaxOpen || math.IsNaN(p.Max) {
		hi = ")"
	}
	bound := func(x float64, inf string) string {
		if math.IsNaN(x) {
			return inf
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	kind := "an integer"
	if p.Type == Float {
		kind = "a number"
	}
	return fmt.Sprintf("%s in %s%s, %s%s", kind, lo, bound(p.Min, "-inf"), bound(p.Max, "inf"), hi)
}

// parse converts and range-checks one value.
func (p Param) parse(s string) (any, error) {
	switch p.Type {
	case Enum:
		if !slices.Contains(p.Allowed, s) {
			return nil, fmt.Errorf("%q is not %s", s, p.Domain())
		}
		return s, nil
	case Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		if !p.inRange(float64(n)) {
			return nil, fmt.Errorf("%d is not %s", n, p.Domain())
		}
		return n, nil
	default:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%q is not a finite number", s)
		}
		if !p.inRange(f) {
			return nil, fmt.Errorf("%v is not %s", f, p.Domain())
		}
		return f, nil
	}
}

func (p Param) inRange(x float64) bool {
	if !math.IsNaN(p.Min) && (x < p.Min || p.MinOpen && x == p.Min) {
		return false
	}
	if !math.IsNaN(p.Max) && (x > p.Max || p.MaxOpen && x == p.Max) {
		return false
	}
	return true
}

// Values are a method's parameters, parsed and complete (defaults filled in).
type Values map[string]any

// Int returns an Int parameter (0 when absent: the registry fills every one).
func (v Values) Int(name string) int { n, _ := v[name].(int); return n }

// Float returns a Float parameter.
func (v Values) Float(name string) float64 { f, _ := v[name].(float64); return f }

// String returns an Enum parameter.
func (v Values) String(name string) string { s, _ := v[name].(string); return s }

// Config is a method resolved for one job: its entry, the requested ratio and
// its parameter values.
type Config struct {
	Entry *Entry
	// Ratio is the requested ratio; 0 for a method that takes none.
	Ratio  float64
	Values Values
}

// Name is the method's name ("" for the zero Config).
func (c Config) Name() string {
	if c.Entry == nil {
		return ""
	}
	return c.Entry.Name
}

// Budget is the number of context tokens out of n the method recomputes
// through the last layer: ⌈r·N⌉ for a method with a ratio, n for full, 0 for
// the others (a Select without a ratio chooses its own count).
func (c Config) Budget(n int) int {
	switch {
	case c.Entry == nil:
		return 0
	case c.Entry.Kind == Fresh:
		return n
	case c.Entry.TakesRatio:
		return Budget(c.Ratio, n)
	}
	return 0
}

// Resolve checks a method, its ratio and its parameters and returns them
// typed, defaults filled. Every problem is reported (errors of type *Error,
// joined): an unknown method, a ratio out of [0, 1], an unknown parameter
// key (with the method's known keys) and a value of the wrong type or out of
// range (with the allowed values).
func (r *Registry) Resolve(name string, ratio float64, params map[string]string) (Config, error) {
	e, err := r.Lookup(name)
	if err != nil {
		return Config{}, err
	}
	c := Config{Entry: e, Values: Values{}}
	var errs []error
	// A ratio out of range is an error even for a method that ignores it: it
	// is a mistake in the job either way.
	if err := CheckRatio(ratio); err != nil {
		errs = append(errs, err)
	}
	if e.TakesRatio {
		c.Ratio = ratio
	}
	for _, p := range e.Params {
		v, err := p.parse(p.Default)
		if err != nil {
			panic(fmt.Sprintf("methods: default of %s.%s: %v", e.Name, p.Name, err))
		}
		c.Values[p.Name] = v
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		i := slices.IndexFunc(e.Params, func(p Param) bool { return p.Name == k })
		if i < 0 {
			errs = append(errs, &Error{Field: "method_params." + k, Msg: "unknown parameter of method " + e.Name + " (" + e.knownKeys() + ")"})
			continue
		}
		v, err := e.Params[i].parse(params[k])
		if err != nil {
			errs = append(errs, &Error{Field: "method_params." + k, Msg: err.Error()})
			continue
		}
		c.Values[k] = v
	}
	if len(errs) > 0 {
		return c, joinErrors(errs)
	}
	return c, nil
}

func (e *Entry) knownKeys() string {
	if len(e.Params) == 0 {
		return "it takes none"
	}
	names := make([]string, len(e.Params))
	for i, p := range e.Params {
		names[i] = p.Name
	}
	return "its parameters: " + strings.Join(names, ", ")
}

// Errors is several *Error found at once.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	out := make(Errors, len(errs))
	for i, e := range errs {
		out[i] = e.(*Error)
	}
	return out
}

// Check re-checks a Config whose ratio or values were set by hand after
// Resolve: the ratio, every parameter's presence, type and range.
func (c Config) Check() error {
	if c.Entry == nil {
		return &Error{Field: "method", Msg: "none given"}
	}
	var errs []error
	if c.Entry.TakesRatio {
		if err := CheckRatio(c.Ratio); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.Entry.Params {
		v, ok := c.Values[p.Name]
		if !ok {
			errs = append(errs, &Error{Field: "method_params." + p.Name, Msg: "missing"})
			continue
		}
		typeOK := false
		switch v.(type) {
		case int:
			typeOK = p.Type == Int
		case float64:
			typeOK = p.Type == Float
		case string:
			typeOK = p.Type == Enum
		}
		if !typeOK {
			errs = append(errs, &Error{Field: "method_params." + p.Name, Msg: fmt.Sprintf("%v (%T) is not of type %s", v, v, p.Type)})
			continue
		}
		if _, err := p.parse(fmt.Sprint(v)); err != nil {
			errs = append(errs, &Error{Field: "method_params." + p.Name, Msg: err.Error()})
		}
	}
	if len(errs) > 0 {
		return joinErrors(errs)
	}
	return nil
}

// Table is the registry as the Markdown tables of docs/METHODS.md (a test
// keeps the file equal to it).
func (r *Registry) Table() string {
	var b strings.Builder
	b.WriteString("| method | takes a ratio | needs --aux | what it recomputes |\n|---|---|---|---|\n")
	yes := map[bool]string{true: "yes", false: "no"}
	for _, e := range r.entries {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", e.Name, yes[e.TakesRatio], yes[e.NeedsAux], e.Help)
	}
	b.WriteString("\n| method | parameter | type and range | default | meaning |\n|---|---|---|---|---|\n")
	for _, e := range r.entries {
		for _, p := range e.Params {
			def := "`" + p.Default + "`"
			if p.Default == "" {
				def = `""`
			}
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s |\n", e.Name, p.Name, p.Domain(), def, p.Help)
		}
	}
	return b.String()
}
