"""A ``bremen train`` run's target policy as a dataset behaviour (``bremen collect --policy DIR``).

:func:`load_run_policy` restores the newest intact checkpoint of a run directory (through
:func:`bremen_jax.run.evaluate.restore_run`, as ``bremen evaluate`` does) and
returns its task and target policy; :func:`run_policy_source` turns the policy into the
:class:`~bremen_jax.datasets.mixtures.PolicySource` that
:func:`~bremen_jax.datasets.make.collect_dataset` perturbs with one of the original's noise
mixtures (``pure`` = the policy's mean action).
"""

from __future__ import annotations

import pathlib
from typing import Any, Tuple

import ml_collections

from bremen_jax.datasets.mixtures import PolicySource
from bremen_jax.models.policy import Policy
from bremen_jax.run.evaluate import restore_run


def load_run_policy(workdir: str | pathlib.Path
                    ) -> Tuple[Any, Any, Any, ml_collections.ConfigDict]:
    """``(task, policy, policy_params, cfg)`` of the newest intact checkpoint of a ``bremen train``
    or ``bremen offline`` run (:func:`bremen_jax.run.evaluate.restore_run`: the buffer size is the
    checkpoint's, so offline runs restore too).

    ``task`` is the run's :class:`~bremen_jax.envs.Task`, ``policy`` its
    :class:`~bremen_jax.models.policy.Policy`, ``policy_params`` the learner's target policy
    parameters and ``cfg`` the run's stored config (``config.json``).

    Raises:
        FileNotFoundError: ``workdir`` has no ``config.json`` (not a run), or no checkpoint.
    """
    r = restore_run(workdir)
    return r.phases.task, r.phases.policy, r.state.learner.policy, r.cfg


def run_policy_source(policy: Any, params: Any) -> PolicySource:
    """The ``"run"`` behaviour: ``policy``'s deterministic (mean) action with ``params``; no
    measured mean return (the dataset's noise-free episodes give one). A package
    :class:`~bremen_jax.models.policy.Policy` is keyed by its config (its collector can be
    stored on disk); any other policy object by identity."""
    key = ("bremen_policy", policy.cfg) if type(policy) is Policy else None
    return PolicySource("run", policy.act_deterministic, params, None, key=key)
