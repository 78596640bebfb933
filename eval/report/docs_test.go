package report

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The committed report (make eval into docs/eval, make eval-sweep into
// docs/eval/sweep) has the columns this package writes today, every RULER
// family, every method and variant the configs name, and each seed's score:
// a report left over from an older format or a partial run fails here.
func TestCommittedReportsHaveTheColumns(t *testing.T) {
	families := []string{"niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt"}
	for _, c := range []struct {
		dir     string
		tasks   []string
		methods []string
		seeds   int
	}{
		{"../../docs/eval", append(slices.Clone(families), "vt_distractor"),
			[]string{"full", "reuse", "ape", "cacheblend", "cacheclip", "cacheclip[aux_mode=fresh]", "cacheclip[budget=adaptive]"}, 3},
		{"../../docs/eval/sweep", families, []string{"full", "cacheblend", "cacheclip[aux_mode=fresh]", "cacheclip[aux_mode=cached]"}, 0},
	} {
		f, err := os.Open(filepath.Join(c.dir, "results.csv"))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		if len(recs) == 0 || !slices.Equal(recs[0], CSVHeader) {
			t.Fatalf("%s/results.csv header %v, want %v", c.dir, recs[0], CSVHeader)
		}
		have := map[string]bool{}
		for _, r := range recs[1:] {
			have[r[0]+" "+r[1]] = true
			if seeds := r[slices.Index(CSVHeader, "score_by_seed")]; c.seeds > 0 && strings.Count(seeds, ":") != c.seeds {
				t.Errorf("%s: %s %s: score_by_seed %q, want %d seeds", c.dir, r[0], r[1], seeds, c.seeds)
			}
		}
		for _, task := range c.tasks {
			for _, m := range c.methods {
				if !have[task+" "+m] {
					t.Errorf("%s/results.csv has no row of %s on %s", c.dir, m, task)
				}
			}
			if _, err := os.Stat(filepath.Join(c.dir, "quality-"+task+".png")); err != nil {
				t.Errorf("%s: no quality plot of %s: %v", c.dir, task, err)
			}
		}
		md, err := os.ReadFile(filepath.Join(c.dir, "results.md"))
		if err != nil {
			t.Fatal(err)
		}
		wants := []string{"| per seed |", "| 95% interval |", "## Averaged over tasks", "## Differences averaged over tasks"}
		if len(c.tasks) > len(families) {
			wants = append(wants, "## Averaged over the families "+strings.Join(families, ", "))
		}
		for _, want := range wants {
			if !strings.Contains(string(md), want) {
				t.Errorf("%s/results.md lacks %q", c.dir, want)
			}
		}
	}
}
