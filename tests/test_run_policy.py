"""Datasets from a BREMEN run's policy (``bremen collect --policy RUN_DIR``): the ``run``
behaviour source over the original's mixtures; sizes, noise, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.datasets import mixtures
from bremen_jax.datasets.run_policy import run_policy_source
from bremen_jax.envs import make_task
from bremen_jax.models.policy import PolicyConfig, make_policy


def make_dataset(task, policy, params, noise, size, num_envs, key):
    """The collection ``collect_dataset`` runs for a run directory (without the file)."""
    data = mixtures.collect_mixture(task, [run_policy_source(policy, params)],
                                    mixtures.mixture_components(noise), size, key,
                                    num_envs=num_envs)
    ret = data.episodes["return_mean"]
    return data.transitions, float("nan") if ret is None else ret


@pytest.fixture(scope="module")
def setup():
    task = make_task("inverted_pendulum", backend="positional", episode_length=30)
    policy = make_policy(PolicyConfig(obs_dim=4, act_dim=1, hidden_sizes=(8, 8)))
    return task, policy, policy.init(jax.random.key(0))


def test_pure_is_the_mean_action_and_noise_adds_spread(setup):
    task, policy, params = setup
    tr, ret = make_dataset(task, policy, params, "pure", 120, 4, jax.random.key(1))
    assert tr.obs.shape == (120, 4) and tr.action.shape == (120, 1)
    mean, _ = policy.dist(params, jnp.asarray(tr.obs))
    np.testing.assert_allclose(tr.action, np.asarray(mean), atol=1e-6)
    assert np.isfinite(ret)
    tr3, _ = make_dataset(task, policy, params, "gaussian3", 120, 4, jax.random.key(1))
    resid = tr3.action - np.asarray(policy.dist(params, jnp.asarray(tr3.obs))[0])
    assert 0.2 < resid.std() < 0.4
    trr, _ = make_dataset(task, policy, params, "random", 120, 4, jax.random.key(1))
    assert trr.action.min() >= -1 and trr.action.max() <= 1 and trr.action.std() > 0.4


def test_bad_arguments(setup):
    task, policy, params = setup
    with pytest.raises(ValueError, match="noise must be one of"):
        make_dataset(task, policy, params, "eps9", 120, 4, jax.random.key(0))
    with pytest.raises(ValueError, match="size must be a positive int"):
        make_dataset(task, policy, params, "pure", 0, 4, jax.random.key(0))


def test_eps_mixture_exact_size(setup):
    task, policy, params = setup
    tr, _ = make_dataset(task, policy, params, "eps3", 121, 4, jax.random.key(2))
    assert tr.obs.shape == (121, 4)
    mean, _ = policy.dist(params, jnp.asarray(tr.obs))
    same = np.isclose(tr.action, np.asarray(mean), atol=1e-6)[:, 0]
    # rows 0-23 random walk, 24-71 pure, 72-120 eps-greedy with eps = 0.3
    assert not same[:24].any() and same[24:72].all() and 0.5 < same[72:].mean() < 0.95


def test_load_run_policy_restores_the_latest_target_policy(tmp_path):
    from bremen_jax import config as config_lib
    from bremen_jax.algo.phases import make_phases
    from bremen_jax.datasets.run_policy import load_run_policy
    from bremen_jax.run import checkpoint

    cfg = config_lib.load_config("test")
    (tmp_path / "config.json").write_text(cfg.to_json(indent=2))
    phases = make_phases(config_lib.split(cfg)[0])
    state = phases.init(jax.random.key(3))
    with checkpoint.Checkpointer(tmp_path / "checkpoints") as ckpt:
        ckpt.save(1, state)
    task, policy, params, run_cfg = load_run_policy(tmp_path)
    assert task.name == "inverted_pendulum" and run_cfg.backend == "positional"
    chex.assert_trees_all_equal(params, state.learner.policy)
    assert policy.act_deterministic(params, np.zeros(task.obs_size, np.float32), None).shape == (
        task.action_size,)
