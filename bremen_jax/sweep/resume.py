"""Resuming an interrupted sweep: what its ``sweep.json`` must hold and match.

:func:`bremen_jax.sweep.program.run_sweep` (``resume=True``) reads the sweep to continue with
:func:`read_unfinished` and refuses, in one line, one that differs from this call in any of
:data:`RESUME_FIELDS` (:func:`check_same_sweep`). Run states between compiled calls are
checkpointed under ``<workdir>/``:data:`CHECKPOINTS```/outer<i>``.
"""

from __future__ import annotations

import json
import pathlib

from bremen_jax.run.checkpoint import config_diff
from bremen_jax.sweep.spec import SweepError

__all__ = ["CHECKPOINTS", "RESUME_FIELDS", "check_same_sweep", "read_unfinished"]

RESUME_FIELDS = ("config", "sweep", "seeds", "points", "outer", "num_deployments", "offline")
CHECKPOINTS = "checkpoints"  # <workdir>/checkpoints/outer<i>: an outer value's run states


def read_unfinished(workdir: str | pathlib.Path) -> dict:
    """The ``sweep.json`` of a sweep to resume; :class:`SweepError` (one line) when there is none
    or it cannot be read."""
    path = pathlib.Path(workdir) / "sweep.json"
    if not path.is_file():
        raise SweepError(f"cannot resume {workdir}: it holds no sweep.json (not a sweep directory; "
                         f"start the sweep there without --resume)")
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SweepError(f"cannot resume {workdir}: its sweep.json is unreadable "
                         f"({type(e).__name__}); expected the JSON 'bremen sweep' writes") from None
    if not isinstance(old, dict) or not all(k in old for k in RESUME_FIELDS):
        raise SweepError(f"cannot resume {workdir}: its sweep.json lacks "
                         f"{[k for k in RESUME_FIELDS if k not in (old or {})]} (not written by "
                         f"'bremen sweep')")
    return old


def check_same_sweep(old: dict, new: dict, workdir: pathlib.Path) -> None:
    """:class:`SweepError` naming the first of :data:`RESUME_FIELDS` in which the sweep to resume
    (``old``: its ``sweep.json``) differs from this call's (``new``)."""
    def norm(x):
        return json.loads(json.dumps(x, sort_keys=True, default=str))

    for field in RESUME_FIELDS:
        if norm(old.get(field)) == norm(new.get(field)):
            continue
        what = f"{field} ({norm(old.get(field))} there, {norm(new.get(field))} now)"
        if field == "config":
            what = "config field " + ("; ".join(config_diff(old[field], new[field])[:3])
                                      or "values")
        raise SweepError(f"cannot resume {workdir}: its {what} differs from this call's; resume "
                         f"with the same sweep file, --config overrides and dataset, or use a "
                         f"new --workdir")
