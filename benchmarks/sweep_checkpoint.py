"""What a sweep checkpoint costs (``bremen sweep --checkpoint-every``): size, save and restore time.

``python -m benchmarks.sweep_checkpoint [--config quick_tuned] [--runs 5] [--repeats 3]
[--out FILE]``

Builds the state a checkpoint holds for ``--runs`` runs of the config (every leaf of
``RunState`` with a leading runs axis, from ``jax.eval_shape`` of the run's init, so no program is
compiled), filled with standard-normal floats (incompressible: the worst case for the disk; a
real buffer is partly zeros until it fills), and saves it ``--repeats`` times with
:class:`bremen_jax.run.checkpoint.Checkpointer` (orbax, SHA-256 of every array, synchronous),
then restores the newest with :meth:`~bremen_jax.run.checkpoint.Checkpointer.restore_intact`
(checksums verified). The metrics a sweep checkpoint also holds are a few KiB and are left out.

Writes ``benchmarks/results/<device>-<date>-sweep-checkpoint-<config>.json`` (or ``--out``) with
the bytes in memory and on disk, every save's seconds, the restore's, and the 1-minute load
average before and after (the machine may be shared).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import time
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="quick_tuned")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.runs < 1 or args.repeats < 1:
        p.error(f"--runs and --repeats must be >= 1, got {args.runs}, {args.repeats}")

    import jax
    import numpy as np

    from benchmarks.sweep_scaling import device_label
    from bremen_jax import config as config_lib
    from bremen_jax.algo.phases import make_phases
    from bremen_jax.run.checkpoint import Checkpointer, is_prng_key
    from bremen_jax.sweep import tree_nbytes

    static, _ = config_lib.split(config_lib.load_config(args.config))
    phases = make_phases(static)
    one = jax.eval_shape(phases.init, jax.eval_shape(jax.random.key, 0))
    rng = np.random.default_rng(0)

    def fill(x):
        shape = (args.runs,) + tuple(x.shape)
        if is_prng_key(x):
            return jax.random.split(jax.random.key(0), int(np.prod(shape))).reshape(shape)
        if np.issubdtype(x.dtype, np.floating):
            return rng.standard_normal(shape).astype(x.dtype)
        return rng.integers(0, 100, shape).astype(x.dtype)

    state = jax.tree.map(fill, one)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    load0 = os.getloadavg()[0]
    folder = pathlib.Path(tempfile.mkdtemp(prefix="sweep-ckpt-"))
    saves = []
    try:
        ckpt = Checkpointer(folder, max_to_keep=2)
        for step in range(1, args.repeats + 1):
            t = time.perf_counter()
            ckpt.save(step, {"runs": state})
            saves.append(round(time.perf_counter() - t, 3))
        disk = sum(f.stat().st_size for f in (folder / str(args.repeats)).rglob("*")
                   if f.is_file())
        t = time.perf_counter()
        ckpt.restore_intact({"runs": abstract})
        restore = round(time.perf_counter() - t, 3)
        ckpt.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    doc = {"benchmark": "sweep_checkpoint", "device": device_label(1), "config": args.config,
           "date": time.strftime("%Y-%m-%d"), "runs": args.runs,
           "state_bytes_per_run": tree_nbytes(one), "state_bytes": tree_nbytes(state),
           "disk_bytes": int(disk), "save_s": saves, "restore_s": restore,
           "fill": "standard normal floats (incompressible)",
           "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    out = pathlib.Path(args.out or RESULTS / f"{doc['device']}-{doc['date']}-sweep-checkpoint-"
                                             f"{args.config}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    mib = 2 ** 20
    print(f"{args.runs} runs of {args.config}: state {doc['state_bytes'] / mib:.1f} MiB, "
          f"{disk / mib:.1f} MiB on disk; save {saves} s, restore {restore} s "
          f"(load {doc['loadavg_1min']}); wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
