"""Host-side records of a run: log rows per chunk and per deployment, and ``summary.json``.

The drivers hand these functions the (NumPy) metrics of the schedule's parts
(:mod:`bremen_jax.algo.schedule`); nothing here runs inside ``jit``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bremen_jax.data import buffer as buffer_lib
from bremen_jax.run.logs import to_python
from bremen_jax.types import Metrics


@dataclasses.dataclass
class Book:
    """Host-side bookkeeping carried in the checkpoint's JSON (a resumed run's files are whole)."""

    records: list = dataclasses.field(default_factory=list)   # finished deployments
    pre: dict = dataclasses.field(default_factory=dict)       # current deployment's preamble
    returns: list = dataclasses.field(default_factory=list)   # its chunk returns so far
    timings: dict = dataclasses.field(default_factory=dict)   # cumulative seconds per phase
    compile_s: dict = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0


def chunk_row(static, d: int, c: int, improve: Metrics, ev: Metrics) -> dict[str, Any]:
    """Row of the ``chunks`` stream for chunk ``c`` (1-based) of deployment ``d``: the last
    iteration's value of each ``[trpo.chunk]`` improve metric, the chunk's mean imagined return,
    and the evaluation."""
    improve = {k: np.asarray(v) for k, v in improve.items()}
    row = {"deployment": d, "chunk": c, "iteration": (d - 1) * static.trpo.iterations
           + c * static.trpo.chunk, **{k: v[-1] for k, v in improve.items()},
           "imagined_return_mean": improve["imagined_return"].mean(), **ev}
    return to_python(row)


def preamble_row(preamble: Metrics, num_active: int) -> dict[str, Any]:
    """Scalars of a deployment's preamble (per-member vectors -> mean over active members)."""
    out = {}
    for k, v in preamble.items():
        a = np.asarray(v)
        if a.ndim == 0:
            out[k] = a
        elif k.startswith("dynamics/"):
            out[k] = a[:num_active].astype(np.float64).mean()
    return to_python(out)


def metric(row: dict, key: str) -> float | None:
    v = row.get(key)
    return None if v is None else float(v)


def deployment_record(d: int, env_steps: int, pre: dict, returns: list) -> dict[str, Any]:
    """Row of the ``deployments`` stream: the preamble scalars, the BC-init return, the return
    after the last chunk, ``env_steps`` (real transitions so far; evaluations not counted)."""
    return {"deployment": d, "env_steps": env_steps,
            "bc_return": metric(pre, "bc_eval/return_mean"),
            "return": returns[-1] if returns else metric(pre, "bc_eval/return_mean"), **pre}


def brief_record(rec: dict, returns: list) -> dict[str, Any]:
    """What ``summary.json`` keeps of a deployment record: ``deployment``, ``env_steps``,
    ``bc_return``, ``return``, ``chunk_returns`` (each chunk's evaluation) and ``collect_return``:
    the mean return of the episodes that collected the deployment's data, i.e. of the collecting
    policy (deployment 1: uniform random; later: the previous deployment's target policy, with
    its exploration noise; offline: None)."""
    return ({k: rec[k] for k in ("deployment", "env_steps", "bc_return", "return")}
            | {"collect_return": rec.get("collect/return_mean")}
            | {"chunk_returns": list(returns)})


def _current(rec: dict) -> dict:
    """A record of a checkpoint written before ``random_return`` was named ``collect_return``."""
    if "random_return" not in rec:
        return rec
    return {("collect_return" if k == "random_return" else k): v for k, v in rec.items()}


def build_summary(static, book: Book, pos, K: int, C: int, driver: str,
                  samples_per_deployment: int) -> dict[str, Any]:
    """``summary.json``: returns per deployment, samples, wall time by phase, compile time."""
    recs = [_current(r) for r in book.records]
    return {
        "task": static.task, "backend": static.backend, "driver": driver,
        "finished": tuple(pos) == (K, C), "position": {"deployment": pos[0], "chunk": pos[1]},
        "deployments": len(recs), "num_deployments": K,
        "env_steps": recs[-1]["env_steps"] if recs else 0,
        # The original's TotalSamples counts the model's training split only (reference §8).
        "train_samples": len(recs) * buffer_lib.split_sizes(
            samples_per_deployment, static.dynamics.val_fraction, static.val_blocks)[0],
        # Deployment 1's collection only: the later ones collect with the trained policy.
        "random_policy_return": recs[0]["collect_return"] if recs else None,
        "returns": [r["return"] for r in recs], "bc_returns": [r["bc_return"] for r in recs],
        "per_deployment": recs,
        "wall_time_s": {"total": round(book.wall_s, 3),
                        **{k: round(v, 3) for k, v in book.timings.items()}},
        "compile_time_s": {"total": round(sum(book.compile_s.values()), 3), **book.compile_s},
    }
