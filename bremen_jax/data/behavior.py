"""Behaviour datasets from the target policy of a BREMEN run (superseded by ``make``/``mixtures``).

``load_run_policy(workdir)`` restores the latest checkpoint of a ``bremen train`` run directory and
returns its task and target policy. :func:`make_dataset` collects one of the original's mixtures
(:data:`bremen_jax.data.mixtures.MIXTURES`: ``pure``, ``eps1``, ``eps3``, ``gaussian1``,
``gaussian3``, ``random``) around the policy's mean action, with the exact component counts and
layout of :func:`bremen_jax.data.mixtures.collect_mixture`. ``bremen collect`` goes through
:func:`bremen_jax.data.make.collect_dataset`, which also records the metadata.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax

from bremen_jax import config as config_lib
from bremen_jax.data import mixtures

NOISES = tuple(mixtures.MIXTURES)


def load_run_policy(workdir: str | pathlib.Path):
    """``(task, policy, policy_params, cfg)`` of the latest checkpoint in a ``bremen train`` run."""
    from bremen_jax import checkpoint as ckpt_lib
    from bremen_jax.algo import deployment
    from bremen_jax.algo.phases import make_phases

    workdir = pathlib.Path(workdir)
    cfg = deployment.load_run_config(workdir)
    static, _ = config_lib.split(cfg)
    phases = make_phases(static)
    abstract = jax.eval_shape(phases.init, jax.eval_shape(jax.random.key, 0))
    with ckpt_lib.Checkpointer(workdir / "checkpoints") as ckpt:
        state, _ = ckpt.restore(abstract)
    return phases.task, phases.policy, state.learner.policy, cfg


def make_dataset(task, policy, params: Any, noise: str, size: int, num_envs: int, key):
    """Collects exactly ``size`` transitions of the ``noise`` mixture around ``policy``'s mean.

    Returns ``(Transition [size, ...] of NumPy arrays, mean return of the complete episodes in
    the data (NaN if none))``.
    """
    components = mixtures.mixture_components(noise)
    src = mixtures.PolicySource("run", policy.act_deterministic, params)
    data = mixtures.collect_mixture(task, [src], components, size, key, num_envs=num_envs)
    ret = data.episodes["return_mean"]
    return data.transitions, float("nan") if ret is None else ret
