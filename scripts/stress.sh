#!/usr/bin/env bash
# Runs CI's job (.ci/run) several times on fresh clones of the committed HEAD while two busy
# processes load the machine, the way a shared CI runner is loaded; prints each run's result
# and duration. A suite that fails here fails some day in CI.
#
#   scripts/stress.sh [RUNS] [--cold]
#
# RUNS defaults to 5. Each clone builds into one shared target folder (the dependencies are
# compiled once; STRESS_TARGET names an existing one to start warm); --cold gives every clone
# its own, as CI has. Logs stay in the printed folder. Exits non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."

runs=5
cold=0
for a in "$@"; do
  case "$a" in
    --cold) cold=1 ;;
    [0-9]*) runs=$a ;;
    *) echo "usage: $0 [RUNS] [--cold]" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d /tmp/stress.XXXXXX)
shared_target="${STRESS_TARGET:-$work/target}"
echo "stress: $runs runs of .ci/run on fresh clones of $(git rev-parse --short HEAD), two busy processes; logs in $work"

busy=()
stop_busy() { for p in "${busy[@]}"; do kill "$p" 2>/dev/null; done; busy=(); }
trap stop_busy EXIT
for _ in 1 2; do
  (while :; do :; done) &
  busy+=($!)
done

failed=0
for i in $(seq 1 "$runs"); do
  clone="$work/clone-$i"
  git clone --quiet --no-local "$PWD" "$clone"
  target=$shared_target
  [ "$cold" = 1 ] && target="$clone/target"
  start=$(date +%s)
  if (cd "$clone" && CARGO_TARGET_DIR="$target" ./.ci/run) >"$work/run-$i.log" 2>&1; then
    result=green
  else
    result=RED
    failed=$((failed + 1))
  fi
  echo "run $i: $result in $(( $(date +%s) - start )) s ($work/run-$i.log)"
  if [ "$result" = RED ]; then
    grep -E "^test .* FAILED|panicked at|^error" "$work/run-$i.log" | head -20 | sed 's/^/  | /'
  fi
  rm -rf "$clone"
done
stop_busy
echo "stress: $((runs - failed)) of $runs green"
[ "$failed" = 0 ]
