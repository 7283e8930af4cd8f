"""Mixtures of the original (BRAC): exact counts, noise wrappers, layout, reproducibility.

Collection tests use the physics-free toy Brax env of ``tests/toys.py``: obs = [x, c],
x += 0.1 + 0.1·a per step, c ~ U(0, 1) fixed per episode; termination never fires.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.datasets import mixtures as mx
from bremen_jax.envs import make_custom_task

from toys import ToyEnv


W = jnp.array([[0.8], [-1.5]], jnp.float32)


def linear_policy(params, obs, key):
    del key
    return jnp.tanh(obs @ params)


@pytest.fixture(scope="module")
def task():
    return make_custom_task("toy", ToyEnv(), reward_fn=lambda o, a, n: n[..., 0],
                            done_fn=lambda n: jnp.zeros(n.shape[:-1]), episode_length=15)


@pytest.fixture(scope="module")
def source():
    return mx.PolicySource("lin", linear_policy, W, mean_return=3.5)


def test_split_counts_hand_numbers():
    assert mx.split_counts(1000, [2, 4, 4]) == [200, 400, 400]
    assert mx.split_counts(1001, [2, 4, 4]) == [200, 400, 401]
    assert mx.split_counts(1_000_000, [2, 4, 4]) == [200_000, 400_000, 400_000]
    assert mx.split_counts(7, [1, 1]) == [3, 4]
    assert mx.split_counts(3, [2, 4, 4]) == [0, 1, 2]
    assert mx.split_counts(10, [1, 1, 1]) == [3, 3, 4]
    with pytest.raises(ValueError, match="size must be a positive int"):
        mx.split_counts(0, [1])
    with pytest.raises(ValueError, match="weights must be"):
        mx.split_counts(10, [1, 0])


def test_column_layout_hand_numbers():
    assert mx.column_layout(60, 4, 15) == (4, 15)
    assert mx.column_layout(60, 8, 30) == (2, 30)
    assert mx.column_layout(100, 8, 1000) == (1, 100)
    assert mx.column_layout(10, 8, 1) == (5, 2)  # 8 envs x 2 steps would leave 3 columns empty
    assert mx.column_layout(200_000, 128, 1000) == (128, 1563)
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        mx.column_layout(10, 0, 5)


def test_mixture_table_matches_brac():
    eps1 = mx.mixture_components("eps1")
    assert [(c.name, c.weight, c.epsilon, c.sigma) for c in eps1] == [
        ("randwalk", 2, 1.0, 0.0), ("pure", 4, 0.0, 0.0), ("eps", 4, 0.1, 0.0)]
    assert mx.mixture_components("gaussian3")[2].sigma == 0.3
    assert mx.mixture_components("eps3")[2].epsilon == 0.3
    assert [c.epsilon for c in mx.mixture_components("random")] == [1.0]
    with pytest.raises(ValueError, match="noise must be one of"):
        mx.mixture_components("eps9")
    with pytest.raises(ValueError, match="epsilon must be in"):
        mx.Component("bad", 1, epsilon=1.5)


def _actions(eps, sigma, n=4000, obs=(0.5, 0.2)):
    noisy = mx.make_noisy_policy(linear_policy)
    params = mx.NoiseParams(W, jnp.float32(eps), jnp.float32(sigma))
    keys = jax.random.split(jax.random.key(3), n)
    act = jax.jit(jax.vmap(noisy, in_axes=(None, None, 0)))(params, jnp.array(obs), keys)
    return np.asarray(act)[:, 0], float(linear_policy(W, jnp.array(obs), None)[0])


def test_noisy_policy_pure_eps_gaussian_uniform():
    act, mean = _actions(0.0, 0.0)
    np.testing.assert_array_equal(act, mean)  # pure: the policy's action, untouched
    act, mean = _actions(0.3, 0.0)
    frac = np.mean(act != mean)
    assert 0.26 < frac < 0.34  # epsilon-greedy: whole action replaced with probability 0.3
    assert act.min() >= -1 and act.max() <= 1
    act, mean = _actions(0.0, 0.3)
    assert 0.27 < np.std(act - mean) < 0.33 and abs(np.mean(act - mean)) < 0.02
    act, _ = _actions(0.0, 5.0)  # clipped to [-1 + 1e-3, 1 - 1e-3] (BRAC clip_eps)
    np.testing.assert_allclose([act.min(), act.max()], [-1 + mx.CLIP_EPS, 1 - mx.CLIP_EPS])
    act, mean = _actions(1.0, 0.0)  # random walk = i.i.d. uniform
    assert np.all(act != mean) and abs(act.mean()) < 0.05 and 0.55 < act.std() < 0.6


def test_noisy_policy_jit_matches_eager():
    noisy = mx.make_noisy_policy(linear_policy)
    params = mx.NoiseParams(W, jnp.float32(0.5), jnp.float32(0.2))
    obs, key = jnp.array([0.3, 0.9]), jax.random.key(11)
    np.testing.assert_allclose(jax.jit(noisy)(params, obs, key), noisy(params, obs, key))


@pytest.fixture(scope="module")
def eps1_data(task, source):
    data = mx.collect_mixture(task, [source], mx.MIXTURES["eps1"], 303, jax.random.key(0),
                              num_envs=4)
    return data


def test_proportions_are_exact_and_recorded(eps1_data):
    data = eps1_data
    tr = data.transitions
    chex.assert_shape([tr.obs, tr.next_obs], (303, 2))
    chex.assert_shape([tr.reward, tr.done, tr.truncation], (303,))
    chex.assert_type([tr.obs, tr.action, tr.reward, tr.next_obs, tr.done, tr.truncation],
                     np.float32)
    assert [(c["name"], c["start"], c["stop"]) for c in data.components] == [
        ("randwalk", 0, 60), ("pure", 60, 181), ("eps", 181, 303)]
    ids = mx.component_ids(data.components, 303)
    assert np.bincount(ids).tolist() == [60, 121, 122]
    # layout from the smallest component: 60 rows -> 4 envs x 15 steps; 121 rows -> 3 calls
    assert [(c["num_envs"], c["steps_per_env"], c["calls"]) for c in data.components] == [
        (4, 15, 1), (4, 15, 3), (4, 15, 3)]
    assert data.timing["collected_steps"] == 60 * 7


def test_component_actions(eps1_data):
    tr, ids = eps1_data.transitions, mx.component_ids(eps1_data.components)
    policy = np.asarray(jax.vmap(linear_policy, in_axes=(None, 0, None))(W, tr.obs, None))
    same = np.isclose(tr.action, policy, atol=1e-6)[:, 0]
    assert not same[ids == 0].any()  # random walk: uniform, never the policy's action
    assert same[ids == 1].all()  # pure
    assert 0.75 < same[ids == 2].mean() < 1.0  # eps = 0.1
    assert np.abs(tr.action).max() <= 1.0


def test_episode_ends_are_flagged(eps1_data):
    tr = eps1_data.transitions
    ends = (tr.done + tr.truncation) > 0
    continues = np.all(tr.obs[1:] == tr.next_obs[:-1], axis=1)
    assert ends[-1]
    np.testing.assert_array_equal(ends[:-1], ~continues)  # a jump in obs <=> a flagged end
    # 60 rows = 4 episodes; 121 = 8 episodes + a 1-row cut; 122 = 8 episodes + a 2-row cut
    assert ends.sum() == 4 + 9 + 9
    assert eps1_data.episodes["num_episodes"] == 20  # complete 15-step episodes
    np.testing.assert_allclose(eps1_data.episodes["length_mean"], 15.0)


def test_reproducible_for_a_seed(task, source, eps1_data):
    again = mx.collect_mixture(task, [source], mx.MIXTURES["eps1"], 303, jax.random.key(0),
                               num_envs=4)
    assert again.timing["compile_s"] == 0.0  # compiled collector reused
    for a, b in zip(jax.tree.leaves(again.transitions), jax.tree.leaves(eps1_data.transitions)):
        np.testing.assert_array_equal(a, b)
    other = mx.collect_mixture(task, [source], mx.MIXTURES["eps1"], 303, jax.random.key(1),
                               num_envs=4)
    assert not np.array_equal(other.transitions.obs, eps1_data.transitions.obs)


def test_gaussian_mixture_noise(task, source):
    data = mx.collect_mixture(task, [source], mx.MIXTURES["gaussian3"], 300, jax.random.key(2),
                              num_envs=4)
    tr, ids = data.transitions, mx.component_ids(data.components)
    policy = np.asarray(jax.vmap(linear_policy, in_axes=(None, 0, None))(W, tr.obs, None))
    resid = (tr.action - policy)[ids == 2, 0]
    assert 0.2 < resid.std() < 0.4
    assert np.abs(tr.action[ids == 2]).max() <= 1 - mx.CLIP_EPS + 1e-7
    np.testing.assert_allclose(tr.action[ids == 1], policy[ids == 1], atol=1e-6)


def test_several_sources(task, source):
    other = mx.PolicySource("neg", linear_policy, -W, mean_return=1.0)
    comps = (mx.Component("a", 1, source=0), mx.Component("b", 1, source=1))
    data = mx.collect_mixture(task, [source, other], comps, 61, jax.random.key(4), num_envs=2)
    tr, ids = data.transitions, mx.component_ids(data.components)
    assert np.bincount(ids).tolist() == [30, 31]
    for i, params in enumerate((W, -W)):
        pol = np.asarray(jax.vmap(linear_policy, in_axes=(None, 0, None))(params, tr.obs, None))
        np.testing.assert_allclose(tr.action[ids == i], pol[ids == i], atol=1e-6)
    assert [c["source_mean_return"] for c in data.components] == [3.5, 1.0]


def test_bad_arguments(task, source):
    with pytest.raises(ValueError, match="uses source 1 but only 1 sources"):
        mx.collect_mixture(task, [source], (mx.Component("x", 1, source=1),), 10,
                           jax.random.key(0))
    with pytest.raises(ValueError, match="sources must hold at least one"):
        mx.collect_mixture(task, [], mx.MIXTURES["pure"], 10, jax.random.key(0))
    with pytest.raises(ValueError, match="size must be a positive int"):
        mx.collect_mixture(task, [source], mx.MIXTURES["pure"], 0, jax.random.key(0))
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        mx.collect_mixture(task, [source], mx.MIXTURES["pure"], 10, jax.random.key(0),
                           num_envs=0)
    with pytest.raises(ValueError, match="does not cover"):
        mx.component_ids([{"start": 0, "stop": 5}], 6)


def test_tiny_size_with_an_empty_component(task, source):
    data = mx.collect_mixture(task, [source], mx.MIXTURES["eps1"], 3, jax.random.key(5))
    assert [c["count"] for c in data.components] == [0, 1, 2]
    assert data.transitions.obs.shape == (3, 2)
    assert data.components[0]["calls"] == 0 and data.components[0]["num_episodes"] == 0
    np.testing.assert_array_equal(mx.component_ids(data.components), [1, 2, 2])
    np.testing.assert_array_equal(data.transitions.truncation, [1, 1, 1])  # 1-step columns


def test_fast_compile_reaches_the_collector_and_keeps_the_data(task, source, eps1_data,
                                                               monkeypatch,
                                                               compile_options_seen):
    """``BREMEN_JAX_COMPILE=fast`` (``bremen collect --fast-compile``) compiles the collector with
    the fast effort's XLA options, as a cache entry of its own; same data up to rounding."""
    from bremen_jax.run.compile import COMPILE_EFFORTS

    seen = compile_options_seen
    monkeypatch.setenv("BREMEN_JAX_COMPILE", "fast")
    data = mx.collect_mixture(task, [source], mx.MIXTURES["eps1"], 303, jax.random.key(0),
                              num_envs=4)
    assert COMPILE_EFFORTS["fast"] in seen
    np.testing.assert_allclose(data.transitions.obs, eps1_data.transitions.obs, atol=1e-5)
    np.testing.assert_array_equal(mx.component_ids(data.components),
                                  mx.component_ids(eps1_data.components))
