"""Offline BREMEN (reference §10.1): one phase on a fixed dataset.

Fit the ensemble on the dataset (ordered 85/15 split), clone the behaviour policy on all of it,
re-initialise the target policy from the clone, then run ``trpo.iterations`` TRPO iterations on
imagined rollouts in chunks of ``trpo.chunk`` (one jitted call each), evaluating deterministic real
episodes after the clone and after every chunk. Metrics go to ``<workdir>/offline.{csv,jsonl}`` and
TensorBoard; the summary to ``<workdir>/summary.json``.

As in the original, the dataset's own rewards are ignored: imagined transitions are scored by the
task's ``reward_fn``.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases
from bremen_jax.data import scores
from bremen_jax.data.dataset import load_dataset
from bremen_jax.envs import make_task
from bremen_jax.logs import MetricWriter
from bremen_jax.types import Transition


def summarize_chunk(metrics: dict) -> dict:
    """``[N]`` per-iteration metrics of a chunk -> the last value of each (and the mean return)."""
    out = {k: v[-1] for k, v in metrics.items()}
    out["imagined_return_mean"] = jnp.mean(metrics["imagined_return"])
    return out


def run_offline(cfg: ml_collections.ConfigDict, dataset_path: str | pathlib.Path,
                workdir: str | pathlib.Path, *, max_rows: int | None = None,
                log_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs offline BREMEN and returns the summary dict (also written to ``summary.json``)."""
    static, hp = config_lib.split(cfg)
    workdir = pathlib.Path(workdir)
    task = make_task(static.task, backend=static.backend, episode_length=static.episode_length)
    data, meta = load_dataset(dataset_path, task=task)
    if max_rows is not None:
        data = jax.tree.map(lambda x: x[:max_rows], data)
    n = int(data.obs.shape[0])
    n_train = int(n * (1.0 - static.val_fraction))
    if n_train < static.dynamics.batch_size:
        raise config_lib.ConfigError(
            f"dataset {dataset_path} has {n} rows, so {n_train} training rows, fewer than "
            f"dynamics.batch_size={static.dynamics.batch_size}")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(cfg.to_json(indent=2))
    writer = MetricWriter(workdir)
    phases = make_phases(static, task=task, capacity=n, max_segments=1)
    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return out

    key = jax.random.key(cfg.seed)
    with jax.default_matmul_precision(static.precision):
        state = phases.init(key)
        batch = Transition(*(jnp.asarray(getattr(data, f)) for f in
                             ("obs", "action", "reward", "next_obs", "done", "truncation")))
        state = jax.jit(phases.insert)(state, batch)
        del batch
        state, m = timed("fit_dynamics", jax.jit(phases.fit_dynamics), state, hp)
        row = writer.write("offline", 0, {"phase": 0, **m})
        log_fn(f"dynamics: epochs {row.get('dynamics/epochs')} val {row.get('dynamics/val_loss')}")
        state, m = timed("fit_bc", jax.jit(phases.fit_bc), state, hp)
        evaluate = jax.jit(phases.evaluate)
        state, ev = timed("evaluate", evaluate, state, hp)
        bc_return = float(ev["eval/return_mean"])
        writer.write("offline", 0, {**m, **ev})
        log_fn(f"BC return {bc_return:.2f}")
        improve = jax.jit(phases.improve, static_argnums=2)
        returns = []
        for c in range(static.trpo_iterations // static.trpo_chunk):
            state, m = timed("improve", improve, state, hp, static.trpo_chunk)
            state, ev = timed("evaluate", evaluate, state, hp)
            it = (c + 1) * static.trpo_chunk
            row = writer.write("offline", it, {**summarize_chunk(m), **ev})
            returns.append(row["eval/return_mean"])
            log_fn(f"iter {it}: real return {row['eval/return_mean']:.2f} imagined "
                   f"{row['imagined_return_mean']:.2f} kl_to_bc {row['kl_to_behavior']:.4f}")
    writer.close()
    summary = {
        "task": static.task, "dataset": str(dataset_path), "dataset_size": n,
        "behavior_return": meta.get("behavior_return"),
        "bc_return": bc_return,
        "bremen_return": returns[-1] if returns else bc_return,
        "bremen_returns": returns,
        "trpo_iterations": static.trpo_iterations,
        "wall_time_s": {k: round(v, 3) for k, v in timings.items()},
    }
    # D4RL-style normalised scores against the task's pinned random/expert returns (or None)
    summary["normalized_scores"] = scores.scores_or_none(static.task, {
        "behavior": summary["behavior_return"], "bc": bc_return,
        "bremen": summary["bremen_return"]})
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
