"""Offline sweeps: the dataset every run of ``bremen sweep --dataset`` trains on.

Each run is offline BREMEN (:func:`bremen_jax.run.run_offline`'s run: one deployment whose buffer
holds the dataset); :mod:`bremen_jax.sweep.program` vmaps them over seeds and points, with the
dataset passed once as a replicated argument.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

from bremen_jax.algo.phases import Phases, make_phases
from bremen_jax.sweep.spec import OuterPlan, SweepError
from bremen_jax.types import Transition


@dataclasses.dataclass(frozen=True, eq=False)
class OfflineData:
    """The dataset of an offline sweep: every run trains on it (offline BREMEN, one deployment).

    Attributes:
        path: the dataset file.
        task: the task object (:func:`bremen_jax.envs.make_task`) the runs evaluate on.
        batch: flat ``[N, ...]`` transitions, passed to the program once (replicated), not per run.
        meta: the dataset's metadata (``behavior_return``, ``behavior_policy`` ...).
        max_rows: the row limit asked for (``None``: the whole file).
    """

    path: str
    task: Any
    batch: Transition
    meta: dict
    max_rows: int | None = None

    @property
    def size(self) -> int:
        """N, the rows every run's buffer holds."""
        return int(self.batch.obs.shape[0])

    def info(self) -> dict:
        """What ``sweep.json`` and the summary record of the dataset."""
        behavior = self.meta.get("behavior_return")
        return {"task": self.task.name, "path": self.path, "rows": self.size,
                "max_rows": self.max_rows,
                "behavior_policy": self.meta.get("behavior_policy"),
                "behavior_return": None if behavior is None else float(behavior)}


def load_offline_data(plans: Sequence[OuterPlan], dataset: str | pathlib.Path,
                      max_rows: int | None = None) -> OfflineData:
    """Loads ``dataset`` for the sweep's plans, which must share task, backend and episode
    length (``outer`` may change anything else). One-line errors otherwise, and the dataset
    loader's own for a bad file."""
    from bremen_jax.run.offline import load_offline_data as load

    if max_rows is not None and max_rows < 1:
        raise SweepError(f"max_rows must be >= 1, got {max_rows}")
    keys = {(p.static.task, p.static.backend, p.static.episode_length) for p in plans}
    if len(keys) > 1:
        raise SweepError(f"an offline sweep trains every run on one dataset, so its 'outer' "
                         f"values must share task, backend and episode_length; got "
                         f"{sorted(keys, key=str)}")
    task, batch, meta, _ = load(plans[0].static, dataset, max_rows)
    return OfflineData(path=str(pathlib.Path(dataset).resolve()), task=task, batch=batch,
                       meta=dict(meta), max_rows=max_rows)


def plan_phases(plan: OuterPlan, data: OfflineData | None = None) -> Phases:
    """The phases of one outer value: online, or offline with a buffer that holds ``data``."""
    if data is None:
        return make_phases(plan.static)
    return make_phases(plan.static, task=data.task, capacity=data.size, max_segments=1)
