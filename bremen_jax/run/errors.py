"""What the drivers make of the phases' non-finite counters (issue 13).

Inside the compiled phases an update whose result is not finite is rejected and counted
(:mod:`bremen_jax.algo.phases`); a collection with a non-finite action is not inserted. Here, on
the host: :func:`nonfinite_lines` words the counters for the console (once per phase call), and
:func:`check_actions` stops a run whose policy produced a non-finite action, before anything of it
is saved, with :class:`NonFiniteError` (one line in the CLI, exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

PREFIX = "nonfinite/"
# counter -> (the phase that reports it, what was rejected)
COUNTERS = {
    "nonfinite/dynamics_steps": ("fit_dynamics", "dynamics updates"),
    "nonfinite/bc_steps": ("fit_bc", "BC updates"),
    "nonfinite/trpo_steps": ("improve", "TRPO steps"),
    "nonfinite/baseline_fits": ("improve", "baseline fits"),
}
ACTIONS = "nonfinite/actions"


class NonFiniteError(FloatingPointError):
    """A run stopped because its policy produced non-finite actions; the message says which
    deployment, how many, and which checkpoint is intact."""


def total(value: Any) -> int:
    """A counter's total: a scalar, or running counts along the last axis (the last entry of
    each run is its total; leading axes, e.g. ``[C]`` chunks, are summed)."""
    a = np.asarray(value)
    return int(a.sum() if a.ndim == 0 else a[..., -1].sum())


def nonfinite_lines(metrics: Mapping[str, Any]) -> list[str]:
    """``["fit_bc: 37 non-finite BC updates rejected (previous values kept)", ...]``: one line
    per non-zero rejection counter in ``metrics`` (a phase's or a deployment's)."""
    lines = []
    for key, (phase, what) in COUNTERS.items():
        n = total(metrics[key]) if key in metrics else 0
        if n:
            lines.append(f"{phase}: {n} non-finite {what} rejected (previous values kept)")
    return lines


def where_saved(saved: tuple[int, int] | None) -> str:
    """``"its last good checkpoint (deployment 1, chunk 2) is intact"``, or that there is none."""
    if saved is None or saved[0] == 0:
        return "it has no checkpoint yet"
    return f"its last good checkpoint (deployment {saved[0]}, chunk {saved[1]}) is intact"


def check_actions(metrics: Mapping[str, Any], deployment: int, saved: tuple[int, int] | None,
                  workdir: Any) -> None:
    """Raises :class:`NonFiniteError` if ``metrics`` count non-finite actions.

    Args:
        metrics: a collect phase's (or a deployment preamble's) metrics.
        deployment: the deployment whose data was being collected (1-based).
        saved: position of the newest checkpoint on disk (``None`` or deployment 0: none).
        workdir: the run's work directory (for the message).
    """
    n = total(metrics[ACTIONS]) if ACTIONS in metrics else 0
    if n:
        raise NonFiniteError(
            f"deployment {deployment}: the policy produced {n} non-finite actions; the run "
            f"stopped in {workdir}; {where_saved(saved)}; the batch was not stored. "
            f"The policy's outputs overflowed: start again with a smaller bc.learning_rate, "
            f"trpo.target_kl or imagine.explore_sigma")
