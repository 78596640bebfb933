#!/usr/bin/env bash
# Torture test of cacheclip's reliability promises (docs/RELIABILITY.md). Run by
# hand, not by `make test`: about 10-15 minutes on a 2-core machine.
#
#   scripts/torture.sh                 # everything, in out/torture
#   QUESTIONS=120 JOB_TRIALS=4 scripts/torture.sh
#
# It generates tiny random models and a niah task (`cacheclip demo`), runs an
# uninterrupted reference job, then, each against that reference:
#   kill    kill -9 a job at random points (1 kill; 4 in every sixth trial), then rerun it to the end
#   build   kill -9 `shards build` at random points twice, build to the end, verify,
#           count leftover lock files, run the job on that store
#   flip / truncate / swap   damage shard files; the job must detect and rebuild
#           them (answers identical), `shards verify` must report every one
#   two     two processes on one shard (together, and 2 s apart): one must refuse
#           with exit 5 naming the holder, the dataset must be exact
#   budget  10 rows with unknown chunk ids, budget 2 rows: every retry exits 4
#           without _SUCCESS; an explicit --max-errors 50% then succeeds (exit 3)
# and prints one table line per trial: rows, duplicates, missing, answer
# mismatches (against the reference), the verify result and the exit codes;
# "kept" is the rows committed when the last kill came, "locks a->b" the build
# lock files left by the kills and after the next build.
# Exit status: 0 when every trial passed.
set -uo pipefail
cd "$(dirname "$0")/.."

W=${WORK:-out/torture}
N=${QUESTIONS:-200}
JOB_TRIALS=${JOB_TRIALS:-12}
BUILD_TRIALS=${BUILD_TRIALS:-3}
FLIPS=${FLIPS:-30}
TRUNCS=${TRUNCS:-5}
SEED=${SEED:-$RANDOM}
# Commit every 2 s (default 10 s) so that kills land between commits of a run
# that lasts ~10-30 s and the resume path, not only the restart, is exercised.
COMMIT=${COMMIT:-2s}
RANDOM=$SEED

go build -o bin/cacheclip ./cmd/cacheclip && go build -o bin/torture ./tools/torture || exit 1
BIN=$PWD/bin/cacheclip
T=$PWD/bin/torture
rm -rf "$W" && mkdir -p "$W"
W=$(cd "$W" && pwd)
echo "torture: seed $SEED, $N questions, work dir $W, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

"$BIN" demo --workdir "$W/demo" --model /nonexistent --questions "$N" >"$W/demo.log" 2>&1 || { cat "$W/demo.log"; exit 1; }
D=$W/demo
Q=$D/questions.parquet C=$D/corpus.parquet P=$D/primary A=$D/aux
job() { # job STORE OUT [flags...]: the job every trial runs
	local store=$1 out=$2
	shift 2
	"$BIN" run --questions "$Q" --corpus "$C" --store "$store" --model "$P" --aux "$A" --method cacheclip --ratio 0.2 \
		--out "$out" --progress none --log-format json --commit-interval "$COMMIT" "$@"
}

REF=$W/ref
t0=$(date +%s.%N)
job "$D/shards" "$REF" >"$W/ref.log" 2>&1
ref_code=$?
RUNTIME=$(echo "$(date +%s.%N) - $t0" | bc)
echo "reference run: exit $ref_code in ${RUNTIME}s"
[ "$ref_code" = 0 ] || [ "$ref_code" = 3 ] || { tail "$W/ref.log"; exit 1; }

# rand_delay MAX: sets DELAY to a random delay in [0.3, MAX] seconds. (Not a
# command substitution: a subshell would replay the same $RANDOM sequence.)
rand_delay() { DELAY=$(echo "scale=3; 0.3 + $((RANDOM % 1000)) * ($1 - 0.3) / 1000" | bc); }

FAILED=0
printf '%-9s %-5s %-30s %5s %5s %7s %9s %-22s %-10s %s\n' trial kills detail rows dups missing mismatch verify exits result
row() { # row TRIAL KILLS DETAIL OUT VERIFY EXITS OK_EXTRA
	local read rows dups missing extra mism result=pass
	read=$("$T" compare "$REF" "$4") || read="? ? ? ? ?"
	read -r rows dups missing extra mism <<<"$read"
	if [ "$dups" != 0 ] || [ "$missing" != 0 ] || [ "$extra" != 0 ] || [ "$mism" != 0 ] || [ "$7" != ok ]; then
		result="FAIL${7#ok}"
		FAILED=$((FAILED + 1))
	fi
	printf '%-9s %-5s %-30s %5s %5s %7s %9s %-22s %-10s %s\n' "$1" "$2" "$3" "$rows" "$dups" "$missing" "$mism" "$5" "$6" "$result"
}
done_ok() { [ "$1" = 0 ] || [ "$1" = 3 ]; }

# kill -9 a command (given as a function and args) after a random delay; up to
# KILLS times; sets KILLED_AT to the kill times.
kill_runs() {
	local kills=$1 max=$2 log=$3
	shift 3
	local at="" i
	for ((i = 0; i < kills; i++)); do
		"$@" >>"$log" 2>&1 &
		local pid=$! d
		rand_delay "$max"
		d=$DELAY
		sleep "$d"
		# "$@" is a shell function running in a background subshell: kill the
		# cacheclip process it started, then the subshell, and wait until the
		# killed process has exited, as a scheduler restarts a job only after
		# its process is gone (a rerun meeting a holder still exiting would
		# rightly refuse with exit 5).
		local kids k
		kids=$(pgrep -P "$pid")
		if [ -n "$kids" ] && kill -9 $kids 2>/dev/null; then at="$at${at:+,}$d"; else at="$at${at:+,}(done)"; fi
		kill -9 "$pid" 2>/dev/null
		for k in $kids; do
			while [ -e "/proc/$k" ] && [ "$(cut -d' ' -f3 "/proc/$k/stat" 2>/dev/null)" != Z ]; do sleep 0.05; done
		done
		wait "$pid" 2>/dev/null
	done
	KILLED_AT=$at
}

# --- kill -9 during a job -----------------------------------------------------
for ((t = 1; t <= JOB_TRIALS; t++)); do
	out=$W/kill-$t
	kills=1
	[ $((t % 6)) = 0 ] && kills=4
	kill_runs "$kills" "$RUNTIME" "$W/kill-$t.log" job "$D/shards" "$out" 2>/dev/null # bash's "Killed" notices
	at=$KILLED_AT
	# Rows committed when the last kill came: what the kills did not lose.
	kept=$("$BIN" stats --json "$out" 2>/dev/null | grep -o '"rows": [0-9]*' | head -1 | grep -o '[0-9]*$')
	job "$D/shards" "$out" >>"$W/kill-$t.log" 2>&1
	code=$?
	"$BIN" stats "$out" >/dev/null 2>&1
	sc=$?
	ok=ok
	done_ok "$code" && [ -f "$out/_SUCCESS" ] && [ "$sc" = "$ref_code" ] || ok="ok(exit $code, stats $sc)"
	[ "$ok" = ok ] || ok=bad
	row "kill-$t" "$kills" "at ${at}s; kept ${kept:-0}" "$out" - "run $code stats $sc" "$ok"
done

# --- kill -9 during shards build -------------------------------------------------
build() { "$BIN" shards build --store "$1" --corpus "$C" --model "$P" --workers 2; }
t0=$(date +%s.%N)
build "$W/clean-store" >"$W/clean-build.log" 2>&1 || { tail "$W/clean-build.log"; exit 1; }
BUILDTIME=$(echo "$(date +%s.%N) - $t0" | bc)
for ((t = 1; t <= BUILD_TRIALS; t++)); do
	s=$W/build-$t-store out=$W/build-$t
	kill_runs 2 "$BUILDTIME" "$W/build-$t.log" build "$s" 2>/dev/null
	at=$KILLED_AT
	killed_locks=$(find "$s" -name '*.lock' | wc -l)
	build "$s" >>"$W/build-$t.log" 2>&1
	bc_=$?
	locks=$(find "$s" -name '*.lock' | wc -l)
	v=$("$BIN" shards verify --store "$s" 2>&1 | grep -o '[0-9][0-9]* damaged,' | tr -d ,)
	job "$s" "$out" --write-through=false >"$W/build-$t-job.log" 2>&1
	code=$?
	ok=ok
	{ [ "$bc_" = 0 ] && [ "$locks" = 0 ] && [ "$v" = "0 damaged" ] && done_ok "$code"; } || ok=bad
	row "build-$t" 2 "at ${at}s; locks $killed_locks->$locks" "$out" "$v" "build $bc_ run $code" "$ok"
done

# --- damaged store: bit flips, truncations, a swap --------------------------------
mapfile -t SHARDS < <(find "$W/clean-store" -name '*.kvs' | sort)
damage_trial() { # damage_trial NAME COUNT ACTION
	local name=$1 count=$2 action=$3 i
	local a=$W/$name-store-job b=$W/$name-store-verify out=$W/$name
	cp -a "$W/clean-store" "$a"
	local picked=()
	for ((i = 0; i < count; i++)); do picked+=("${SHARDS[$(((RANDOM * 7 + i * 13) % ${#SHARDS[@]}))]#$W/clean-store/}"); done
	mapfile -t picked < <(printf '%s\n' "${picked[@]}" | sort -u)
	for f in "${picked[@]}"; do
		case $action in
		flip | truncate) "$T" damage "$action" "$a/$f" "$RANDOM" >/dev/null ;;
		esac
	done
	if [ "$action" = swap ]; then
		picked=("${SHARDS[0]#$W/clean-store/}" "${SHARDS[1]#$W/clean-store/}")
		mv "$a/${picked[0]}" "$a/swap.tmp" && mv "$a/${picked[1]}" "$a/${picked[0]}" && mv "$a/swap.tmp" "$a/${picked[1]}"
	fi
	cp -a "$a" "$b"
	local v vout vcode
	vout=$("$BIN" shards verify --quarantine=false --store "$b" 2>&1)
	vcode=$?
	v=$(grep -o '[0-9][0-9]* damaged,' <<<"$vout" | tr -d ,)
	job "$a" "$out" >"$W/$name.log" 2>&1
	local code=$? ok=ok
	{ [ "$v" = "${#picked[@]} damaged" ] && [ "$vcode" != 0 ] && done_ok "$code"; } || ok=bad
	row "$name" 0 "${#picked[@]} shard files $action" "$out" "$v; exit $vcode" "run $code" "$ok"
}
damage_trial flip "$FLIPS" flip
damage_trial trunc "$TRUNCS" truncate
damage_trial swap 2 swap

# --- two processes on one shard --------------------------------------------------
for gap in 0 2; do
	out=$W/two-$gap
	job "$D/shards" "$out" >"$W/two-$gap-a.log" 2>&1 &
	pa=$!
	sleep "$gap"
	job "$D/shards" "$out" >"$W/two-$gap-b.log" 2>&1 &
	pb=$!
	wait "$pa"
	ca=$?
	wait "$pb"
	cb=$?
	ok=ok
	{ { done_ok "$ca" && [ "$cb" = 5 ]; } || { done_ok "$cb" && [ "$ca" = 5 ]; }; } || ok=bad
	named=$(cat "$W/two-$gap-a.log" "$W/two-$gap-b.log" | grep -c 'is held by pid')
	row "two-${gap}s" 0 "second after ${gap}s; named $named" "$out" - "$ca $cb" "$ok"
done

# --- retries after an exceeded budget ----------------------------------------------
"$T" spoil "$Q" "$W/spoiled.parquet" 10 >/dev/null || exit 1
out=$W/budget
for try in 1 2 3; do
	Q=$W/spoiled.parquet job "$D/shards" "$out" --max-errors 2 >"$W/budget-$try.log" 2>&1
	code=$?
	s=no
	[ -f "$out/_SUCCESS" ] && s=yes
	ok=ok
	{ [ "$code" = 4 ] && [ "$s" = no ]; } || ok=bad
	printf '%-9s %-5s %-30s %5s %5s %7s %9s %-22s %-10s %s\n' "budget-$try" 0 "max-errors 2; _SUCCESS $s" - - - - - "run $code" "$([ $ok = ok ] && echo pass || echo FAIL)"
	[ $ok = ok ] || FAILED=$((FAILED + 1))
done
Q=$W/spoiled.parquet job "$D/shards" "$out" --max-errors 50% >"$W/budget-4.log" 2>&1
code=$?
s=no
[ -f "$out/_SUCCESS" ] && s=yes
logged=$(grep -c 'error budget changed' "$W/budget-4.log")
ok=pass
{ [ "$code" = 3 ] && [ "$s" = yes ] && [ "$logged" = 1 ]; } || { ok=FAIL; FAILED=$((FAILED + 1)); }
printf '%-9s %-5s %-30s %5s %5s %7s %9s %-22s %-10s %s\n' budget-4 0 "max-errors 50%; _SUCCESS $s" - - - - "change logged $logged" "run $code" "$ok"

echo "torture: $FAILED failed trial(s); logs in $W"
[ "$FAILED" = 0 ]
