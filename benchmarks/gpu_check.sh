#!/usr/bin/env bash
# Everything to measure on a lent GPU (H100/H200), time-boxed, writing at most 8 files under $OUT:
#   bench:   bremen bench --suite paper, all three precisions, with the paper-run projection
#            (bench.json, rewritten after every phase group so that a stopped bench keeps what it
#            measured; bench.md);
#   compile: the compile-time suite (python -m benchmarks.compile_time) on the test config
#            (compile.json, rewritten after every measurement);
#   sweep:   a 3-seed vmapped halfcheetah sweep at the paper's sizes (halfcheetah config) for
#            $DEPLOYMENTS deployments, evaluating every $SWEEP_CHUNK TRPO iterations
#            (sweep.json, sweep_summary.json);
#   plus env.txt (device, versions), parts.txt (each part: exit status, seconds) and log.txt.
# PARTS (default bench,compile) picks the parts. Measured on a lent H200 (2026-12-04, jax 0.11.2):
# the paper bench needs ~300 s for three precisions (highest alone ~120 s; one evaluation of 3
# episodes takes 6.9 s there), the compile suite ~110 s, and one paper deployment of the sweep
# more than the 281 s it got (at the paper's 81 evaluations a deployment, ~560 s of them alone):
# all three do not fit in one 8-minute call, so the sweep is a call of its own:
#   PARTS=sweep BUDGET=540 bash benchmarks/gpu_check.sh
# SWEEP_CHUNK=250 (default) evaluates 9 times a deployment instead of the paper's 81 (trpo.chunk
# 25): the same TRPO updates, fewer evaluation points on the curve.
# Usage, from the repository root (on the device machine, with .whl carried when jax lacks brax):
#   bash benchmarks/gpu_check.sh
#   TINY=1 bash benchmarks/gpu_check.sh   (or --dry-run): every part on a CPU at tiny sizes
# Wheels in .whl/ (see ../shared/tools/gpu-wheels.sh) are installed into .site first.
# Time budget (seconds; override by env): BUDGET=470 BENCH_S=330 COMPILE_S=130; the sweep gets
# what is left. A part that fails or times out is recorded in parts.txt and the script goes on.
set -uo pipefail

[[ "${1:-}" == "--dry-run" ]] && TINY=1
TINY=${TINY:-0}
PARTS=${PARTS:-$( [[ "$TINY" == 1 ]] && echo bench,compile,sweep || echo bench,compile )}
SWEEP_CHUNK=${SWEEP_CHUNK:-$( [[ "$TINY" == 1 ]] && echo 2 || echo 250 )}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/gpu_check_out}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
mkdir -p "$OUT"
LOG=$OUT/log.txt
PARTS_FILE=$OUT/parts.txt
: >"$LOG"
: >"$PARTS_FILE"

if [[ "$TINY" == 1 ]]; then
  BUDGET=${BUDGET:-900}; BENCH_S=${BENCH_S:-300}; COMPILE_S=${COMPILE_S:-400}
  SUITE=tiny; PHASES=${PHASES:-collection,bc}; PRECISION=${PRECISION:-highest}
  SWEEP_BASE=test; DEPLOYMENTS=${DEPLOYMENTS:-1}; COMPILE_ARGS=(--quick --no-hlo)
  PY=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
else
  BUDGET=${BUDGET:-470}; BENCH_S=${BENCH_S:-330}; COMPILE_S=${COMPILE_S:-130}
  SUITE=paper; PHASES=${PHASES:-collection,ensemble,bc,trpo,evaluation}
  PRECISION=${PRECISION:-highest,tensorfloat32,bfloat16}
  SWEEP_BASE=halfcheetah; DEPLOYMENTS=${DEPLOYMENTS:-2}
  COMPILE_ARGS=(--configs test --commands train_host,train_compiled)
  PY=${PYTHON:-python3}
fi
export PYTHONUNBUFFERED=1 PY SUITE PHASES PRECISION WORK OUT DEPLOYMENTS SWEEP_CHUNK

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
  if [[ ",$PARTS," != *",$name,"* ]]; then echo "$name not asked for (PARTS=$PARTS)" >>"$PARTS_FILE"; return; fi
  (( limit > $(left) )) && limit=$(left)
  if (( limit < 20 )); then echo "$name skipped (budget spent)" >>"$PARTS_FILE"; return; fi
  local t0=$SECONDS rc
  echo "=== $name (limit ${limit} s): $*" >>"$LOG"
  # through bash so that CMD may be one of the functions below (exported with export -f)
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >>"$LOG" 2>&1
  rc=$?
  local what=ok; (( rc == 124 || rc == 137 )) && what=timeout; (( rc != 0 && rc != 124 && rc != 137 )) && what=failed
  echo "$name $what rc=$rc seconds=$(( SECONDS - t0 ))" >>"$PARTS_FILE"
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
    --out "$OUT/bench.json" >"$OUT/bench.md"
}
export -f bench
part bench "$BENCH_S" bench
# a bench stopped at its limit leaves a partial bench.json and no report: render what it measured
if [[ -s "$OUT/bench.json" && ! -s "$OUT/bench.md" ]]; then
  "$PY" -m bremen_jax.bench.report "$OUT/bench.json" --out "$OUT/bench.md" >>"$LOG" 2>&1
fi

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
  # --checkpoint-every 1: one compiled call per deployment, so log.txt gets each deployment's
  # wall time and return over the 3 seeds as it ends, also when the part stops at its limit
  # (the run states are checkpointed in $WORK, not sent back: 232 MiB per paper-size run)
  "$PY" -m bremen_jax.cli sweep --config "$WORK/gpu_sweep.py" --workdir "$WORK/sweep" \
    "--config.deploy.num_deployments=$DEPLOYMENTS" "--config.trpo.chunk=$SWEEP_CHUNK" \
    --checkpoint-every 1 || return
  cp "$WORK/sweep/sweep.json" "$OUT/sweep.json"
  cp "$WORK/sweep/summary.json" "$OUT/sweep_summary.json"
}
export -f sweep
part sweep "$(( $(left) - 5 ))" sweep

echo "total seconds=$SECONDS" >>"$PARTS_FILE"
cat "$PARTS_FILE"
rm -rf "$WORK"
