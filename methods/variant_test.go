package methods_test

import (
	"slices"
	"strings"
	"testing"

	"cacheclip/methods"
)

func TestVariants(t *testing.T) {
	reg := methods.Default()
	cases := []struct {
		in     string
		name   string // canonical name; "" when invalid
		method string
		errHas string
	}{
		{"cacheclip", "cacheclip", "cacheclip", ""},
		{" cacheclip[aux_mode=cached] ", "cacheclip[aux_mode=cached]", "cacheclip", ""},
		{"cacheclip[window=1, aux_mode=cached]", "cacheclip[aux_mode=cached,window=1]", "cacheclip", ""},
		{"cacheblend[rank_by=k]", "cacheblend[rank_by=k]", "cacheblend", ""},
		{"cacheclip[windw=1]", "", "", "method_params.windw: unknown parameter of method cacheclip"},
		{"cacheclip[window=0]", "", "", "method_params.window: 0 is not an integer in [1, inf)"},
		{"cacheclip[aux_mode=warm]", "", "", "one of fresh, cached"},
		{"full[window=1]", "", "", "it takes none"},
		{"magic[window=1]", "", "", `"magic" is not one of`},
		{"cacheclip[window=1", "", "", "one closing bracket at the end"},
		{"cacheclip[window]", "", "", `"window" is not key=value`},
		{"cacheclip[window=1,window=2]", "", "", "method_params.window: given twice"},
		{"cacheclip window=1", "", "", "parameters go in brackets"},
		{"[window=1]", "", "", "has no method name"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			v, e, err := reg.ResolveVariant(c.in)
			if c.name == "" {
				if err == nil || !strings.Contains(err.Error(), c.errHas) {
					t.Fatalf("ResolveVariant(%q) error = %v, want one containing %q", c.in, err, c.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveVariant(%q): %v", c.in, err)
			}
			if v.String() != c.name || e.Name != c.method || v.Method != c.method {
				t.Fatalf("ResolveVariant(%q) = %q (entry %s), want %q (%s)", c.in, v, e.Name, c.name, c.method)
			}
			// The canonical name reads back as the same variant.
			if again, err := methods.ParseVariant(v.String()); err != nil || again.String() != v.String() {
				t.Fatalf("round trip of %q: %q, %v", v, again, err)
			}
		})
	}
}

func TestSplitVariants(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"full,reuse", []string{"full", "reuse"}},
		{" full , cacheclip[window=1,reduce=max],cacheclip ", []string{"full", "cacheclip[window=1,reduce=max]", "cacheclip"}},
		{",,", nil},
		{"cacheclip[a=1,b=2],cacheblend[rank_by=k]", []string{"cacheclip[a=1,b=2]", "cacheblend[rank_by=k]"}},
	} {
		if got := methods.SplitVariants(c.in); !slices.Equal(got, c.want) {
			t.Errorf("SplitVariants(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
