package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cacheclip/jobs"
)

// finishPartition writes one shard of a fanned-out dataset with the given rows
// (errors status=error rows among them) and marks it complete.
func finishPartition(t *testing.T, dir string, sh jobs.Partition, rows, errors int) {
	t.Helper()
	ctx := context.Background()
	budget := jobs.ErrorBudget{Count: 1}
	o, err := jobs.OpenOutput(ctx, jobs.OutputOptions{Dir: dir, Partition: sh, MaxErrors: &budget})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < rows; i++ {
		r := jobs.Result{QueryID: fmt.Sprintf("%s-q%d", sh.Tag(), i), Status: jobs.StatusOK, Answer: "x"}
		if i < errors {
			r = jobs.Result{QueryID: r.QueryID, Status: jobs.StatusError, Error: "bad"}
		}
		if err := o.Write(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.Finish(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStatsExitCodes(t *testing.T) {
	dir := t.TempDir()
	finishPartition(t, dir, jobs.Partition{I: 1, N: 4}, 3, 0)
	code, out := run(t, "stats", dir)
	if code != int(jobs.ExitIncomplete) || code == int(jobs.ExitPartial) {
		t.Errorf("incomplete fan-out: exit %d, want %d\n%s", code, jobs.ExitIncomplete, out)
	}
	if !strings.Contains(out, "missing shards   0/4 2/4 3/4") {
		t.Errorf("text output does not list the missing shards:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, jobs.StatsFile)); err == nil {
		t.Error("stats.json written for an incomplete dataset")
	}
	finishPartition(t, dir, jobs.Partition{I: 0, N: 4}, 3, 1)
	finishPartition(t, dir, jobs.Partition{I: 2, N: 4}, 2, 0)
	finishPartition(t, dir, jobs.Partition{I: 3, N: 4}, 2, 0)
	if code, out := run(t, "stats", dir); code != int(jobs.ExitPartial) || strings.Contains(out, "missing") {
		t.Errorf("complete with one error row: exit %d, want %d\n%s", code, jobs.ExitPartial, out)
	}
	if _, err := os.Stat(filepath.Join(dir, jobs.SuccessFile)); err != nil {
		t.Error("no _SUCCESS for a complete dataset within budget")
	}

	over := t.TempDir()
	finishPartition(t, over, jobs.Partition{I: 0, N: 1}, 4, 2)
	if code, out := run(t, "stats", over); code != int(jobs.ExitBudgetExceeded) || !strings.Contains(out, "over budget      0/1") {
		t.Errorf("over budget: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(over, jobs.SuccessFile)); err == nil {
		t.Error("_SUCCESS for a dataset over its error budget")
	}
}
