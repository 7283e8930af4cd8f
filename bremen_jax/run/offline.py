"""Offline BREMEN (reference §10.1): the host driver on one "deployment" whose data is a dataset.

The dataset fills the buffer in :meth:`Schedule.init` (ordered 85/15 split); the preamble fits the
ensemble, clones the behaviour policy on all of it and re-initialises the target policy from the
clone; then ``trpo.iterations`` TRPO iterations on imagined rollouts run in chunks of ``trpo.chunk``,
each followed by deterministic real episodes. Everything else is the online run's: checkpoints,
``--resume``, the chunks/deployments logs, TensorBoard, the progress display and the compile/run
split. As in the original, the dataset's own rewards are ignored: imagined transitions are scored
by the task's ``reward_fn``.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases
from bremen_jax.algo.schedule import Schedule
from bremen_jax.data.dataset import load_dataset
from bremen_jax.envs import make_task
from bremen_jax.run.host import drive
from bremen_jax.run.workdir import Run, RunResult
from bremen_jax.types import Transition

ScoreFn = Callable[[str, dict], "dict | None"]


def load_offline_data(static, dataset_path, max_rows: int | None = None
                      ) -> tuple[Any, Transition, dict, int]:
    """``(task, batch, metadata, N)``: the task of ``static`` and the dataset as flat ``[N, ...]``
    device arrays (its first ``max_rows`` rows when given). Raises the dataset loader's one-line
    errors, or :class:`~bremen_jax.config.ConfigError` when fewer training rows than
    ``dynamics.batch_size`` remain."""
    task = make_task(static.task, backend=static.backend, episode_length=static.episode_length)
    data, meta = load_dataset(dataset_path, task=task)
    if max_rows is not None:
        data = jax.tree.map(lambda x: x[:max_rows], data)
    n = int(data.obs.shape[0])
    n_train = int(n * (1.0 - static.dynamics.val_fraction))
    if n_train < static.dynamics.batch_size:
        raise config_lib.ConfigError(
            f"dataset {dataset_path} has {n} rows, so {n_train} training rows, fewer than "
            f"dynamics.batch_size={static.dynamics.batch_size}")
    batch = Transition(*(jnp.asarray(getattr(data, f)) for f in
                         ("obs", "action", "reward", "next_obs", "done", "truncation")))
    return task, batch, meta, n


def run_offline(cfg: ml_collections.ConfigDict, dataset_path: str | pathlib.Path,
                workdir: str | pathlib.Path, *, max_rows: int | None = None,
                resume: bool = False, stop_at: tuple[int, int] | None = None,
                progress: bool = True, console=None, score_fn: ScoreFn | None = None
                ) -> RunResult:
    """Runs (or, with ``resume``, continues) offline BREMEN in ``workdir``.

    Args:
        cfg: validated config.
        dataset_path: a dataset file (:mod:`bremen_jax.data.dataset`) of ``cfg.task``.
        max_rows: use only the first rows of the dataset.
        score_fn: ``(task, {"behavior": R, "bc": R, "bremen": R}) -> scores or None``, e.g.
            :func:`bremen_jax.datasets.scores.scores_or_none`; adds ``normalized_scores``.
    Returns:
        :class:`RunResult` whose summary adds ``dataset``, ``dataset_size``,
        ``behavior_return``, ``bc_return``, ``bremen_return`` (last iterate), ``bremen_returns``.
    """
    static, _ = config_lib.split(cfg)
    info = {"kind": "offline", "dataset": str(pathlib.Path(dataset_path).resolve()),
            "max_rows": max_rows}
    run = Run(cfg, workdir, resume=resume, K=1, C=static.num_chunks, samples_per_deployment=0,
              info=info, console=console)
    try:
        task, batch, meta, n = load_offline_data(static, dataset_path, max_rows)
    except BaseException:
        run.close()
        raise
    run.samples = n
    schedule = Schedule(make_phases(static, task=task, capacity=n, max_segments=1), offline=True)
    def extra(summary: dict) -> dict:
        out = offline_summary(summary, meta, n, str(dataset_path))
        if score_fn is not None and summary.get("finished"):
            out["normalized_scores"] = score_fn(static.task, {
                "behavior": out["behavior_return"], "bc": out["bc_return"],
                "bremen": out["bremen_return"]})
        return out

    run.summary_extra = extra
    return drive(run, schedule, (jax.random.key(cfg.seed), batch), stop_at=stop_at,
                 progress=progress)


def offline_summary(summary: dict, meta: dict, n: int, dataset: str) -> dict[str, Any]:
    """The offline fields of ``summary.json`` (returns None until the deployment finished)."""
    recs = summary.get("per_deployment") or [{}]
    chunk_returns = recs[-1].get("chunk_returns", [])
    return {"dataset": dataset, "dataset_size": n,
            "behavior_return": meta.get("behavior_return"),
            "bc_return": recs[-1].get("bc_return"),
            "bremen_return": chunk_returns[-1] if chunk_returns else recs[-1].get("bc_return"),
            "bremen_returns": chunk_returns}
