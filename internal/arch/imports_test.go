package arch

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "cacheclip"

// mayImport is the "may import" column of docs/ARCHITECTURE.md: for each
// directory, the project packages (directories, with everything below them)
// its packages may import. A package falls under its longest listed prefix;
// every package may import below its own directory. "*" allows anything.
var mayImport = map[string][]string{
	"cmd":               {"*"},
	"jobs":              {},
	"pipeline":          {},
	"progress":          {},
	"runner":            {"jobs", "pipeline", "progress", "loader", "prefill", "model", "kvshards", "gpu", "kernels"},
	"loader":            {"model", "prefill", "kernels"},
	"prefill":           {"model", "kvshards", "kernels"},
	"model":             {"kernels"},
	"model/backendtest": {"model", "prefill"},
	"gpu":               {"model", "kernels"},
	"kernels":           {},
	"kvshards":          {"kernels"},
	"eval":              {"jobs", "pipeline", "progress", "runner", "loader", "prefill", "model", "kvshards", "gpu", "kernels"},
	"examples":          {"jobs"},
	"tools":             {"*"},
	// Leaves: small packages any other may import (see leaf); they import
	// nothing of the project themselves.
	"internal": {},
	"methods":  {},
}

// leaf lists the directories every package may import: shared helpers
// (internal/...) and the method registry (docs/METHODS.md), which import
// nothing of the project, so importing them cannot tangle the layers.
var leaf = []string{"internal", "methods"}

// rule returns the listed directory a package falls under ("" if none).
func rule(pkg string) string {
	best := ""
	for dir := range mayImport {
		if (pkg == dir || strings.HasPrefix(pkg, dir+"/")) && len(dir) > len(best) {
			best = dir
		}
	}
	return best
}

func allowed(dir, imp string) bool {
	under := func(d string) bool { return imp == d || strings.HasPrefix(imp, d+"/") }
	if under(dir) {
		return true
	}
	for _, a := range append(mayImport[dir], leaf...) {
		if a == "*" || under(a) {
			return true
		}
	}
	return false
}

// TestImportRules lists every package of the module with its non-test
// imports (go list) and checks each project import against mayImport.
func TestImportRules(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the import rules are read with go list: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module+"/")
		dir := rule(pkg)
		if dir == "" {
			t.Errorf("package %s has no row in docs/ARCHITECTURE.md's package table (and mayImport here): add one", f[0])
			continue
		}
		seen++
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if p := strings.TrimPrefix(imp, module+"/"); !allowed(dir, p) {
				t.Errorf("%s imports %s: the row %q of docs/ARCHITECTURE.md allows %v", f[0], imp, dir, mayImport[dir])
			}
		}
	}
	if seen < 10 {
		t.Fatalf("go list named %d packages of %s: not the module", seen, module)
	}
}

// The rules must be able to fail: a few edges that would break the layering.
func TestImportRulesRefuse(t *testing.T) {
	for _, c := range [][2]string{
		{"model", "prefill"},
		{"model/tokenizer", "jobs"},
		{"prefill", "runner"},
		{"prefill/auxscore", "jobs"},
		{"kernels", "model"},
		{"jobs", "model"},
		{"kvshards/shardcmd", "prefill"},
		{"gpu", "prefill"},
		{"eval/agree", "cmd/cacheclip"},
		{"internal/atomicfile", "jobs"},
		{"methods", "prefill"},
	} {
		if allowed(rule(c[0]), c[1]) {
			t.Errorf("%s may import %s, the architecture forbids it", c[0], c[1])
		}
	}
	if !slices.Contains(mayImport["runner"], "prefill") || !allowed(rule("prefill/auxscore"), "prefill") ||
		!allowed(rule("kvshards/s3store"), "internal/atomicfile") || !allowed(rule("jobs"), "methods") {
		t.Error("rules refuse an edge the architecture allows")
	}
}
