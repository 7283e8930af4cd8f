"""Behaviour policies for making datasets: uniform random, or the target policy of a BREMEN run.

``load_run_policy(workdir)`` restores the latest checkpoint of a ``bremen train`` run directory and
returns its task and target policy; :func:`make_dataset` rolls a policy with the original's noise
(reference §10.2: ``pure`` = the policy's mean action, ``gaussian1``/``gaussian3`` = mean +
N(0, 0.1²/0.3²), ``random`` = U(-1, 1)) in vmapped envs and returns a flat, episode-ordered
:class:`~bremen_jax.types.Transition` batch plus the behaviour's mean episode return.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from bremen_jax import config as config_lib
from bremen_jax.data.collect import flatten_env_major, make_collector, summarize_episodes

NOISES = {"pure": 0.0, "gaussian1": 0.1, "gaussian3": 0.3, "random": None}


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
    """Collects ``size`` transitions (``size % num_envs == 0``) with the behaviour ``noise``.

    Returns ``(Transition [size, ...] of NumPy arrays, behaviour mean return)``.
    """
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {sorted(NOISES)}, got {noise!r}")
    if size <= 0 or num_envs <= 0 or size % num_envs:
        raise ValueError(f"size ({size}) must be a positive multiple of num_envs ({num_envs})")
    sigma = NOISES[noise]

    def policy_fn(p, obs, k):
        if sigma is None:
            return jax.random.uniform(k, (task.action_size,), minval=-1.0, maxval=1.0)
        mean, _ = policy.dist(p, obs)
        return mean + sigma * jax.random.normal(k, mean.shape)

    collect = jax.jit(make_collector(task, policy_fn, num_envs, size // num_envs))
    tr, stats = collect(params, key)
    ret = float(summarize_episodes(stats)["return_mean"])
    return jax.tree.map(np.asarray, flatten_env_major(tr)), ret
