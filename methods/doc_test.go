package methods_test

import (
	"os"
	"strings"
	"testing"

	"cacheclip/methods"
)

// docs/METHODS.md holds the registry's table verbatim, between its markers.
func TestMethodsDocMatchesRegistry(t *testing.T) {
	b, err := os.ReadFile("../docs/METHODS.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- methods table: generated from methods.Default().Table() -->\n", "<!-- end of methods table -->"
	doc := string(b)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("docs/METHODS.md lacks the table markers %q … %q", begin, end)
	}
	got := strings.TrimSpace(doc[i+len(begin) : j])
	want := strings.TrimSpace(methods.Default().Table())
	if got != want {
		t.Errorf("docs/METHODS.md's table differs from the registry; replace it with:\n%s", want)
	}
	for _, name := range methods.Default().Names() {
		if !strings.Contains(got, "| `"+name+"` |") {
			t.Errorf("method %s missing from the table", name)
		}
	}
}
