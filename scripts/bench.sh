#!/usr/bin/env bash
# Every benchmark in bench/ with its default arguments; each one's JSON goes to
# bench/results/<name>.json and its stderr to bench/results/<name>.log. Benchmarks share the
# machine: the load average before each is written into bench/results/<name>.load.
# BENCH_TIMEOUT (seconds, default 600) bounds each one; BENCH_ONLY="sender_bench replay_bench"
# runs a subset. Exits non-zero if any benchmark failed or printed no JSON, after running all.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=bench/results
mkdir -p "$OUT"
failed=()
for script in bench/*.py; do
  name=$(basename "$script" .py)
  if [ -n "${BENCH_ONLY:-}" ] && [[ " ${BENCH_ONLY} " != *" ${name} "* ]]; then
    continue
  fi
  echo "== ${name} (load $(cut -d' ' -f1-3 /proc/loadavg))"
  cut -d' ' -f1-3 /proc/loadavg > "$OUT/${name}.load"
  started=$(date +%s)
  timeout --kill-after=30 "${BENCH_TIMEOUT:-600}" "$PY" "$script" > "$OUT/${name}.out" 2> "$OUT/${name}.log"
  rc=$?
  # The JSON document is the whole of stdout; keep it only if it parses.
  if [ "$rc" -eq 0 ] && "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$OUT/${name}.out" 2>> "$OUT/${name}.log"; then
    mv "$OUT/${name}.out" "$OUT/${name}.json"
    echo "   ok in $(( $(date +%s) - started ))s -> $OUT/${name}.json"
  else
    echo "   FAILED rc=${rc} after $(( $(date +%s) - started ))s; see $OUT/${name}.log" >&2
    failed+=("$name")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "benchmarks failed: ${failed[*]}" >&2
  exit 1
fi
