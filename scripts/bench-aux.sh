#!/bin/sh
# The auxiliary's cost and the end-to-end job throughput (docs/BENCHMARKS.md, "The auxiliary's
# cost" and "End-to-end job throughput"), in one go, for a quiet window: the load average is
# printed before and after each benchmark so a reader can tell what else was running.
# About 12 minutes on a quiet 2-core machine; needs the SmolLM2 GGUF (scripts/fetch-smollm2.sh)
# for the real-model agreement, which is skipped without it.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
run() {
	echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg): $*"
	"$GO" test -run '^$' -timeout 90m "$@"
}
# Full prefill and CacheClip at r = 0.2 with each auxiliary mode, in one process.
run -bench 'Methods/^(full|cacheclip|cacheclip-cheap|cacheclip-boundary)$/^r=0.2$' -benchtime 3x ./prefill/
# The primary's own part for a batch of 8 (one by one and in shared forward
# calls), and what stopping unread rows at the last layer saves.
run -bench 'PrefillBatch|UnreadLastLayer' -benchtime 2x ./prefill/
# The default auxiliary (aux_mode=cached) over a shard store, as a job runs it: CPU per
# selection, and the selection's hash (compare it across versions: it must not move).
run -bench 'AuxCachedStore' -benchtime 8x -v ./prefill/
# Each cheaper auxiliary alone: cost, and selection Jaccard against the full auxiliary.
run -bench 'AuxModes$' -benchtime 3x ./prefill/
run -bench 'AuxModesSmolLM2' -benchtime 1x ./eval/agree/
# Whole jobs: questions/s of full and CacheClip r = 0.2 (fresh and boundary auxiliary).
run -bench 'JobQwen05B' -benchtime 1x ./runner/
echo "== done $(date -u '+%H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
