"""Nightly cacheclip batch QA, fanned out over N shards with dynamic task mapping.

Each mapped task runs one shard (`--shard i/N`); every shard writes disjoint part
files into the same output dataset and resumes on retry. A final task merges the
shards' statistics and writes _SUCCESS once every shard is complete.

Exit codes (docs/JOBS.md): 0 ok, 3 partial failure (some status=error rows within
the error budget: the task is marked skipped, not failed), 2 bad configuration,
4 error budget exceeded (counted over every run of the shard, so retries do not
clear it), 5 the shard is held by another live process (retried later), 130
interrupted (retried; the rerun resumes). `cacheclip stats` exits 6 while shards
are missing, 4 when one is over its budget, 3 with error rows, 0 otherwise.
"""

import pendulum
from airflow.decorators import dag, task
from airflow.operators.bash import BashOperator

N_SHARDS = 8
OUT = "/data/qa/answers/{{ ds }}"

RUN = (
    "cacheclip run"
    " --questions /data/qa/questions.parquet"
    " --corpus /data/qa/corpus.parquet"
    " --store /data/kv/qwen7b"
    " --model /models/Qwen2.5-7B-Instruct"
    " --aux /models/SmolLM2-135M"
    " --method cacheclip"
    " --ratio 0.2"
    " --out " + OUT +
    " --log-format json"
    " --shard {shard}/{n}"
)


@dag(
    schedule="15 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cacheclip"],
)
def cacheclip_nightly():
    @task
    def shard_commands() -> list[str]:
        return [RUN.format(shard=i, n=N_SHARDS) for i in range(N_SHARDS)]

    answer = BashOperator.partial(
        task_id="answer_shard",
        retries=3,
        skip_on_exit_code=3,  # partial failure: done, with error rows to look at
    ).expand(bash_command=shard_commands())

    stats = BashOperator(
        task_id="merge_stats",
        bash_command="cacheclip stats " + OUT,
        skip_on_exit_code=3,  # complete, with error rows within the budget
        trigger_rule="none_failed",  # runs after ok and partial (skipped) shards
    )

    answer >> stats


cacheclip_nightly()
