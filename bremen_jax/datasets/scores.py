"""D4RL-style normalised scores with the reference returns pinned per task in the package.

``score = 100 * (R - R_random) / (R_expert - R_random)`` (D4RL; reference anchors §5): 0 is the
uniform-random policy, 100 the expert behaviour policy of the task. The references
``(R_random, R_expert)`` come from :func:`bremen_jax.datasets.behavior_policies.reference_returns`
(``bremen_jax/datasets/behaviors/references.json``), measured with our own evaluator on our tasks;
Brax tasks have no published D4RL references, so scores here are not comparable with D4RL's numbers.
:func:`normalize` is the one implementation of the formula; every other score function calls it.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
from numpy.typing import ArrayLike

from bremen_jax.datasets import behavior_policies


def check_references(task: str, r_random: float, r_expert: float) -> Tuple[float, float]:
    """Validates a reference pair; returns it as floats.

    Raises:
        ValueError: a value is not a finite number, or ``R_expert <= R_random`` (degenerate:
            the score would divide by zero or flip sign).
    """
    try:
        r_random, r_expert = float(r_random), float(r_expert)
    except (TypeError, ValueError) as err:
        raise ValueError(f"reference returns of task {task!r} must be numbers, got "
                         f"R_random={r_random!r}, R_expert={r_expert!r}") from err
    if not (math.isfinite(r_random) and math.isfinite(r_expert)):
        raise ValueError(f"reference returns of task {task!r} must be finite, got "
                         f"R_random={r_random}, R_expert={r_expert}")
    if r_expert <= r_random:
        raise ValueError(f"degenerate reference returns for task {task!r}: R_expert={r_expert} "
                         f"must be greater than R_random={r_random}")
    return r_random, r_expert


def reference_returns(task: str) -> Tuple[float, float]:
    """``(R_random, R_expert)`` pinned for ``task``.

    Raises:
        ValueError: no references are pinned for ``task`` (the message says so), or they are
            degenerate (:func:`check_references`).
    """
    if not isinstance(task, str) or not task:
        raise ValueError(f"task must be a non-empty task name (str), got {task!r}")
    try:
        pair = behavior_policies.reference_returns(task)
    except (KeyError, LookupError, FileNotFoundError, ValueError) as err:
        raise ValueError(f"no reference returns pinned for task {task!r}: {err}") from err
    try:
        r_random, r_expert = pair
    except (TypeError, ValueError) as err:
        raise ValueError(f"reference_returns({task!r}) returned {pair!r}; expected a pair "
                         "(R_random, R_expert)") from err
    return check_references(task, r_random, r_expert)


def normalize(returns: ArrayLike, r_random: float, r_expert: float,
              task: str = "<given>") -> np.ndarray:
    """``100 * (R - R_random) / (R_expert - R_random)`` elementwise (float64 array, NaN kept)."""
    r_random, r_expert = check_references(task, r_random, r_expert)
    returns = np.asarray(returns, dtype=np.float64)
    return 100.0 * (returns - r_random) / (r_expert - r_random)


def normalized_score(task: str, ret: float, *,
                     references: Tuple[float, float] | None = None) -> float:
    """Normalised score of one return on ``task`` (pinned references unless given).

    Raises:
        ValueError: ``ret`` is not a finite number; no or degenerate references.
    """
    try:
        value = float(ret)
    except (TypeError, ValueError) as err:
        raise ValueError(f"return must be a number, got {ret!r}") from err
    if not math.isfinite(value):
        raise ValueError(f"return must be finite, got {value}")
    r_random, r_expert = references if references is not None else reference_returns(task)
    return float(normalize(value, r_random, r_expert, task))


def normalized_scores(task: str, returns: ArrayLike, *,
                      references: Tuple[float, float] | None = None) -> np.ndarray:
    """Normalised scores of an array of returns (any shape; float64; NaN stays NaN)."""
    r_random, r_expert = references if references is not None else reference_returns(task)
    return normalize(returns, r_random, r_expert, task)


def scores_or_none(task: str, returns: dict) -> dict | None:
    """``{name: normalised score or None}`` for a dict of returns, or ``None`` when ``task``
    has no pinned references (runs and sweeps then report raw returns only)."""
    try:
        refs = reference_returns(task)
    except ValueError:
        return None
    out = {}
    for name, ret in returns.items():
        try:
            out[name] = normalized_score(task, ret, references=refs)
        except ValueError:  # None / NaN / inf returns have no score
            out[name] = None
    return out
