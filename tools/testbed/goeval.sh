#!/usr/bin/env bash
# Scores a test-bed export under full prefill through the Go runner on the six families the
# issue-19 targets name (50 held-out questions each, 1,024 tokens in 8 chunks): the quick
# reading taken along a training run between `make eval`s (which scores every method, 3 seeds).
#   tools/testbed/goeval.sh CACHECLIP_BINARY EXPORT_DIR OUT_DIR [SEED]
# SEED defaults to 4242 (the tests' seed); choosing among checkpoints uses one nothing else
# uses (5151), so that the choice does not fit the figures it is later judged by.
set -euo pipefail
bin=$1 export=$2 out=$3 seed=${4:-4242}
"$bin" eval --tasks niah_single,niah_multikey,niah_multivalue,niah_multiquery,vt,vt_distractor \
  --methods full --n 50 --seed "$seed" --agreement-n 0 \
  --model "$export/primary" --aux "$export/aux" --out "$out" --progress none
cat "$out/results.csv"
