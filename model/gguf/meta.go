package gguf

import (
	"fmt"
	"math"
)

// Typed metadata accessors. Each error names the key and what was found, so a
// file with a field of the wrong type says which.

func (f *File) fieldErr(key, msg string) error {
	off := int64(-1)
	if i, ok := f.kv[key]; ok {
		off = f.KVs[i].Offset
	}
	if off >= 0 {
		return fmt.Errorf("gguf %s: offset %d: field %q: %s", f.Path, off, key, msg)
	}
	return fmt.Errorf("gguf %s: field %q: %s", f.Path, key, msg)
}

// String returns a string value; ok is false when key is absent.
func (f *File) String(key string) (string, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return "", false, nil
	}
	s, isStr := v.V.(string)
	if !isStr {
		return "", true, f.fieldErr(key, fmt.Sprintf("want a string, got %s", v.Type))
	}
	return s, true, nil
}

// Uint returns a non-negative integer value of any integer type.
func (f *File) Uint(key string) (uint64, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false, nil
	}
	n, isInt := asInt(v.V)
	if !isInt || n < 0 {
		return 0, true, f.fieldErr(key, fmt.Sprintf("want a non-negative integer, got %s %v", v.Type, v.V))
	}
	return uint64(n), true, nil
}

// Float returns a float value (float32, float64 or an integer).
func (f *File) Float(key string) (float64, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false, nil
	}
	switch x := v.V.(type) {
	case float32:
		return float64(x), true, nil
	case float64:
		return x, true, nil
	}
	if n, isInt := asInt(v.V); isInt {
		return float64(n), true, nil
	}
	return 0, true, f.fieldErr(key, fmt.Sprintf("want a number, got %s", v.Type))
}

// Bool returns a bool value.
func (f *File) Bool(key string) (bool, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return false, false, nil
	}
	b, isBool := v.V.(bool)
	if !isBool {
		return false, true, f.fieldErr(key, fmt.Sprintf("want a bool, got %s", v.Type))
	}
	return b, true, nil
}

// Strings returns an array of strings.
func (f *File) Strings(key string) ([]string, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false, nil
	}
	a, isArr := v.V.(Array)
	if !isArr || a.Elem != TypeString {
		return nil, true, f.fieldErr(key, fmt.Sprintf("want an array of strings, got %s", describe(v)))
	}
	out := make([]string, len(a.Items))
	for i, x := range a.Items {
		out[i] = x.(string)
	}
	return out, true, nil
}

// Ints returns an array of integers of any integer type.
func (f *File) Ints(key string) ([]int64, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false, nil
	}
	a, isArr := v.V.(Array)
	if !isArr {
		return nil, true, f.fieldErr(key, fmt.Sprintf("want an array of integers, got %s", describe(v)))
	}
	out := make([]int64, len(a.Items))
	for i, x := range a.Items {
		n, isInt := asInt(x)
		if !isInt {
			return nil, true, f.fieldErr(key, fmt.Sprintf("want an array of integers, got %s", describe(v)))
		}
		out[i] = n
	}
	return out, true, nil
}

// Floats returns an array of float32 or float64.
func (f *File) Floats(key string) ([]float64, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return nil, false, nil
	}
	a, isArr := v.V.(Array)
	if !isArr || (a.Elem != TypeFloat32 && a.Elem != TypeFloat64) {
		return nil, true, f.fieldErr(key, fmt.Sprintf("want an array of floats, got %s", describe(v)))
	}
	out := make([]float64, len(a.Items))
	for i, x := range a.Items {
		switch y := x.(type) {
		case float32:
			out[i] = float64(y)
		case float64:
			out[i] = y
		}
	}
	return out, true, nil
}

func describe(v Value) string {
	if a, ok := v.V.(Array); ok {
		return "array of " + a.Elem.String()
	}
	return v.Type.String()
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}
