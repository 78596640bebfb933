package methods

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Variant is a method with some of its parameters set, written
// "name[key=value,key=value]" (e.g. "cacheclip[aux_mode=cached]"): the form
// in which an evaluation lists the same method twice with other settings.
type Variant struct {
	Method string
	Params map[string]string // nil or empty: the method's defaults
}

// ParseVariant reads "name" or "name[key=value,...]". It checks only the
// syntax; Registry.ResolveVariant checks the method and its parameters.
func ParseVariant(s string) (Variant, error) {
	s = strings.TrimSpace(s)
	name, rest, bracket := strings.Cut(s, "[")
	v := Variant{Method: strings.TrimSpace(name)}
	if v.Method == "" {
		return v, &Error{Field: "method", Msg: fmt.Sprintf("%q has no method name", s)}
	}
	if !bracket {
		if strings.ContainsAny(s, "]=,") {
			return v, &Error{Field: "method", Msg: fmt.Sprintf("%q: parameters go in brackets, e.g. cacheclip[window=1]", s)}
		}
		return v, nil
	}
	body, ok := strings.CutSuffix(rest, "]")
	if !ok || strings.ContainsAny(body, "[]") {
		return v, &Error{Field: "method", Msg: fmt.Sprintf("%q: want name[key=value,...] with one closing bracket at the end", s)}
	}
	v.Params = map[string]string{}
	for _, kv := range strings.Split(body, ",") {
		k, val, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return v, &Error{Field: "method", Msg: fmt.Sprintf("%q: %q is not key=value", s, strings.TrimSpace(kv))}
		}
		if _, dup := v.Params[k]; dup {
			return v, &Error{Field: "method_params." + k, Msg: fmt.Sprintf("given twice in %q", s)}
		}
		v.Params[k] = strings.TrimSpace(val)
	}
	return v, nil
}

// String is the variant's canonical name: the method, then its parameters
// sorted by key, so two spellings of one variant name one run.
func (v Variant) String() string {
	if len(v.Params) == 0 {
		return v.Method
	}
	kv := make([]string, 0, len(v.Params))
	for _, k := range slices.Sorted(maps.Keys(v.Params)) {
		kv = append(kv, k+"="+v.Params[k])
	}
	return v.Method + "[" + strings.Join(kv, ",") + "]"
}

// ResolveVariant parses a variant and checks its method and parameters
// against the registry (Resolve, at ratio 0: the ratio is set per run).
func (r *Registry) ResolveVariant(s string) (Variant, *Entry, error) {
	v, err := ParseVariant(s)
	if err != nil {
		return v, nil, err
	}
	c, err := r.Resolve(v.Method, 0, v.Params)
	if err != nil {
		return v, nil, err
	}
	return v, c.Entry, nil
}

// SplitVariants splits a comma-separated list of variants, leaving the
// commas inside brackets ("full,cacheclip[window=1,reduce=max]" is two).
// Empty items are dropped.
func SplitVariants(s string) []string {
	var out []string
	depth, start := 0, 0
	add := func(item string) {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth = max(0, depth-1)
		case ',':
			if depth == 0 {
				add(s[start:i])
				start = i + 1
			}
		}
	}
	add(s[start:])
	return out
}
