#!/usr/bin/env bash
# Everything to measure on a lent GPU (H100/H200) in one command that fits in ~8 minutes, writing
# at most 8 files under $OUT:
#   1. bremen bench --suite paper, all three precisions, with the paper-run projection
#      (bench.json, bench.md);
#   2. the compile-time suite (python -m benchmarks.compile_time) on the test config (compile.json);
#   3. a 3-seed vmapped halfcheetah sweep at the paper's sizes (halfcheetah config) for
#      $DEPLOYMENTS deployments, time-boxed by `timeout` (sweep.json, sweep_summary.json);
#   plus env.txt (device, versions), parts.txt (each part: exit status, seconds) and log.txt.
# Usage, from the repository root (on the device machine, with .whl carried when jax lacks brax):
#   bash benchmarks/gpu_check.sh
#   TINY=1 bash benchmarks/gpu_check.sh   (or --dry-run): the same parts on a CPU at tiny sizes
# Wheels in .whl/ (see ../shared/tools/gpu-wheels.sh) are installed into .site first.
# Time budget (seconds; override by env): BUDGET=470 BENCH_S=200 COMPILE_S=100; the sweep gets what
# is left. A part that fails or times out is recorded in parts.txt and the script goes on.
set -uo pipefail

[[ "${1:-}" == "--dry-run" ]] && TINY=1
TINY=${TINY:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/gpu_check_out}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
mkdir -p "$OUT"
LOG=$OUT/log.txt
PARTS=$OUT/parts.txt
: >"$LOG"
: >"$PARTS"

if [[ "$TINY" == 1 ]]; then
  BUDGET=${BUDGET:-900}; BENCH_S=${BENCH_S:-300}; COMPILE_S=${COMPILE_S:-400}
  SUITE=tiny; PHASES=${PHASES:-collection,bc}; PRECISION=${PRECISION:-highest}
  SWEEP_BASE=test; DEPLOYMENTS=${DEPLOYMENTS:-1}; COMPILE_ARGS=(--quick --no-hlo)
  PY=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
else
  BUDGET=${BUDGET:-470}; BENCH_S=${BENCH_S:-200}; COMPILE_S=${COMPILE_S:-100}
  SUITE=paper; PHASES=${PHASES:-collection,ensemble,bc,trpo,evaluation}
  PRECISION=${PRECISION:-highest,tensorfloat32,bfloat16}
  SWEEP_BASE=halfcheetah; DEPLOYMENTS=${DEPLOYMENTS:-2}
  COMPILE_ARGS=(--configs test --commands train_host,train_compiled)
  PY=${PYTHON:-python3}
fi
export PYTHONUNBUFFERED=1 PY SUITE PHASES PRECISION WORK OUT DEPLOYMENTS

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$ROOT/.site" .whl/*.whl >>"$LOG" 2>&1 || echo "wheel install failed" >>"$LOG"
  export PYTHONPATH=$ROOT/.site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi

left() { echo $(( BUDGET - SECONDS )); }

# part NAME SECONDS CMD...: runs CMD under `timeout`, output appended to log.txt; records the result
part() {
  local name=$1 limit=$2; shift 2
  (( limit > $(left) )) && limit=$(left)
  if (( limit < 20 )); then echo "$name skipped (budget spent)" >>"$PARTS"; return; fi
  local t0=$SECONDS rc
  echo "=== $name (limit ${limit} s): $*" >>"$LOG"
  # through bash so that CMD may be one of the functions below (exported with export -f)
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >>"$LOG" 2>&1
  rc=$?
  local what=ok; (( rc == 124 || rc == 137 )) && what=timeout; (( rc != 0 && rc != 124 && rc != 137 )) && what=failed
  echo "$name $what rc=$rc seconds=$(( SECONDS - t0 ))" >>"$PARTS"
}

{
  echo "date: $(date -u +%FT%TZ)  tiny: $TINY  python: $PY"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import jax, sys; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())" 2>&1
  "$PY" -c "import brax, mujoco; print('brax', brax.__version__, 'mujoco', mujoco.__version__)" 2>&1
  nproc
} >"$OUT/env.txt"

# 1. the paper suite (all precisions) with the paper-run projection; the markdown report on stdout
bench() {
  "$PY" -m bremen_jax.cli bench --suite "$SUITE" --phases "$PHASES" --precision "$PRECISION" \
    --out "$WORK/bench.json" >"$OUT/bench.md" && cp "$WORK/bench.json" "$OUT/bench.json"
}
export -f bench
part bench "$BENCH_S" bench

# 2. the compile-time suite
part compile "$COMPILE_S" "$PY" -m benchmarks.compile_time "${COMPILE_ARGS[@]}" \
  --out "$OUT/compile.json" --timeout "$COMPILE_S"

# 3. three seeds, vmapped, of the halfcheetah config (the paper's sizes), as many deployments as set
cat >"$WORK/gpu_sweep.py" <<EOF
base = "$SWEEP_BASE"


def get_sweep():
    return {"seeds": 3}
EOF
sweep() {
  "$PY" -m bremen_jax.cli sweep --config "$WORK/gpu_sweep.py" --workdir "$WORK/sweep" \
    "--config.deploy.num_deployments=$DEPLOYMENTS" || return
  cp "$WORK/sweep/sweep.json" "$OUT/sweep.json"
  cp "$WORK/sweep/summary.json" "$OUT/sweep_summary.json"
}
export -f sweep
part sweep "$(( $(left) - 5 ))" sweep

echo "total seconds=$SECONDS" >>"$PARTS"
cat "$PARTS"
rm -rf "$WORK"
