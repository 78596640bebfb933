package examples

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"cacheclip/jobs"

	"gopkg.in/yaml.v3"
)

var flagRE = regexp.MustCompile(`--([a-z][a-z-]*)`)

// checkRunFlags fails for a `cacheclip run` flag that jobs does not define,
// and returns the flags used.
func checkRunFlags(t *testing.T, where, cmd string) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, n := range jobs.FlagNames() {
		known[n] = true
	}
	used := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(cmd, -1) {
		used[m[1]] = true
		if !known[m[1]] {
			t.Errorf("%s: --%s is not a cacheclip run flag", where, m[1])
		}
	}
	for _, need := range []string{"questions", "model", "out"} {
		if !used[need] {
			t.Errorf("%s: cacheclip run without --%s", where, need)
		}
	}
	return used
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCron(t *testing.T) {
	var lines []string
	for _, l := range strings.Split(read(t, "cron/cacheclip.cron"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("want one cron entry, got %d", len(lines))
	}
	f := strings.Fields(lines[0])
	timeField := regexp.MustCompile(`^(\*|\d+)(-\d+)?(/\d+)?(,\d+)*$`)
	for i := 0; i < 5; i++ {
		if !timeField.MatchString(f[i]) {
			t.Errorf("cron time field %d %q", i, f[i])
		}
	}
	if f[5] != "flock" || f[6] != "-n" {
		t.Errorf("the entry must start with flock -n to avoid overlapping runs: %v", f[5:7])
	}
	cmd := strings.Join(f[5:], " ")
	i := strings.Index(cmd, "cacheclip run")
	if i < 0 {
		t.Fatal("no cacheclip run")
	}
	checkRunFlags(t, "cron", cmd[i:])
}

func TestAirflowDAG(t *testing.T) {
	src := read(t, "airflow/cacheclip_dag.py")
	start := strings.Index(src, `CACHECLIP + " run"`)
	end := strings.Index(src[start:], "\n)\n")
	if start < 0 || end < 0 {
		t.Fatal("RUN command not found")
	}
	used := checkRunFlags(t, "airflow", src[start:start+end])
	if !used["store-cache"] {
		t.Error("airflow: the mapped tasks share an object store through a local --store-cache")
	}
	if !used["shard"] || !strings.Contains(src, "--shard {shard}/{n}") {
		t.Error("the mapped task must pass --shard i/N")
	}
	for _, want := range []string{".partial(", ".expand(bash_command=", `CACHECLIP + " stats "`, "skip_on_exit_code=" + strconv.Itoa(int(jobs.ExitPartial)), `trigger_rule="none_failed"`, "answer >> stats"} {
		if !strings.Contains(src, want) {
			t.Errorf("DAG lacks %q", want)
		}
	}
}

func TestKubernetesIndexedJob(t *testing.T) {
	var job struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			CompletionMode   string `yaml:"completionMode"`
			Completions      int    `yaml:"completions"`
			Parallelism      int    `yaml:"parallelism"`
			PodFailurePolicy struct {
				Rules []struct {
					Action      string `yaml:"action"`
					OnExitCodes *struct {
						Values []int `yaml:"values"`
					} `yaml:"onExitCodes"`
				} `yaml:"rules"`
			} `yaml:"podFailurePolicy"`
			Template struct {
				Spec struct {
					RestartPolicy string `yaml:"restartPolicy"`
					Containers    []struct {
						Name string   `yaml:"name"`
						Args []string `yaml:"args"`
						Env  []struct {
							Name  string `yaml:"name"`
							Value string `yaml:"value"`
						} `yaml:"env"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(strings.NewReader(read(t, "kubernetes/indexed-job.yaml")))
	if err := dec.Decode(&job); err != nil {
		t.Fatal(err)
	}
	s := job.Spec
	if job.APIVersion != "batch/v1" || job.Kind != "Job" || s.CompletionMode != "Indexed" || s.Completions < 1 {
		t.Fatalf("not an Indexed Job: %+v", job)
	}
	if s.Template.Spec.RestartPolicy != "Never" {
		t.Error("podFailurePolicy needs restartPolicy Never")
	}
	c := s.Template.Spec.Containers[0]
	cmd := strings.Join(c.Args, " ")
	i := strings.Index(cmd, "cacheclip run")
	if i < 0 {
		t.Fatal("no cacheclip run")
	}
	checkRunFlags(t, "kubernetes", cmd[i:])
	if !strings.Contains(cmd, `--shard "${JOB_COMPLETION_INDEX}/${SHARDS}"`) {
		t.Error("--shard must come from JOB_COMPLETION_INDEX")
	}
	shards := ""
	for _, e := range c.Env {
		if e.Name == "SHARDS" {
			shards = e.Value
		}
	}
	if shards != strconv.Itoa(s.Completions) {
		t.Errorf("SHARDS=%q but completions=%d", shards, s.Completions)
	}
	failJob := map[int]bool{}
	for _, r := range s.PodFailurePolicy.Rules {
		if r.Action == "FailJob" && r.OnExitCodes != nil {
			for _, v := range r.OnExitCodes.Values {
				failJob[v] = true
			}
		}
	}
	if !failJob[int(jobs.ExitBadConfig)] || !failJob[int(jobs.ExitBudgetExceeded)] || failJob[int(jobs.ExitInterrupted)] {
		t.Errorf("FailJob exit codes %v: want bad config and budget, not interrupted", failJob)
	}
	if !strings.Contains(cmd, `"$rc" -eq `+strconv.Itoa(int(jobs.ExitPartial))) {
		t.Error("the wrapper must map partial failure to success")
	}
}

func TestSlurmArray(t *testing.T) {
	src := read(t, "slurm/cacheclip-array.sbatch")
	if !strings.HasPrefix(src, "#!/bin/bash\n") {
		t.Error("sbatch scripts start with a shell line")
	}
	i := strings.Index(src, `"$CACHECLIP" run`)
	end := strings.Index(src, "rc=$?")
	if i < 0 || end < i {
		t.Fatal("no cacheclip run command")
	}
	used := checkRunFlags(t, "slurm", src[i:end])
	if !used["store"] || !used["store-cache"] {
		t.Error("slurm: the array shares an object store (--store s3://…) through a node-local --store-cache")
	}
	if !strings.Contains(src, `--shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}"`) {
		t.Error("--shard must come from SLURM_ARRAY_TASK_ID")
	}
	if !strings.Contains(src, `if [ "$rc" -eq 3 ]; then exit 0; fi`) {
		t.Error("exit 3 (partial failure) must not fail the array task")
	}
}

// The labeling job file is a valid label job: every key known, labels usable.
func TestLabelingJob(t *testing.T) {
	s, err := jobs.LoadSpecFile("labeling/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Task != jobs.TaskLabel || len(s.Labels) < 2 || !strings.Contains(s.LabelPrompt, "{choices}") {
		t.Errorf("not a label job showing its choices: task %q labels %q prompt %q", s.Task, s.Labels, s.LabelPrompt)
	}
}
