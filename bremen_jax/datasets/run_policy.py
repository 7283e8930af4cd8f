"""A ``bremen train`` run's target policy as a dataset behaviour (``bremen collect --policy DIR``).

:func:`load_run_policy` restores the latest checkpoint of a run directory (through the run
package: :func:`bremen_jax.run.workdir.load_run_config` and :mod:`bremen_jax.run.checkpoint`) and
returns its task and target policy; :func:`run_policy_source` turns the policy into the
:class:`~bremen_jax.datasets.mixtures.PolicySource` that
:func:`~bremen_jax.datasets.make.collect_dataset` perturbs with one of the original's noise
mixtures (``pure`` = the policy's mean action).
"""

from __future__ import annotations

import pathlib
from typing import Any, Tuple

import jax
import ml_collections

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases
from bremen_jax.datasets.mixtures import PolicySource
from bremen_jax.run import checkpoint as ckpt_lib
from bremen_jax.run.workdir import load_run_config


def load_run_policy(workdir: str | pathlib.Path
                    ) -> Tuple[Any, Any, Any, ml_collections.ConfigDict]:
    """``(task, policy, policy_params, cfg)`` of the latest checkpoint in a ``bremen train`` run.

    ``task`` is the run's :class:`~bremen_jax.envs.Task`, ``policy`` its
    :class:`~bremen_jax.models.policy.Policy`, ``policy_params`` the learner's target policy
    parameters and ``cfg`` the run's stored config (``config.json``).

    Raises:
        FileNotFoundError: ``workdir`` has no ``config.json`` (not a run).
    """
    workdir = pathlib.Path(workdir)
    cfg = load_run_config(workdir)
    static, _ = config_lib.split(cfg)
    phases = make_phases(static)
    abstract = jax.eval_shape(phases.init, jax.eval_shape(jax.random.key, 0))
    with ckpt_lib.Checkpointer(workdir / "checkpoints") as ckpt:
        state, _ = ckpt.restore(abstract)
    return phases.task, phases.policy, state.learner.policy, cfg


def run_policy_source(policy: Any, params: Any) -> PolicySource:
    """The ``"run"`` behaviour: ``policy``'s deterministic (mean) action with ``params``; no
    measured mean return (the dataset's noise-free episodes give one)."""
    return PolicySource("run", policy.act_deterministic, params, None)
