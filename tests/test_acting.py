"""Tests for bremen_jax.envs.acting on a tiny physics-free Brax env (compiles in about a second).

Toy env (``tests/toys.py``): obs = [x, c]; reset draws x ~ U(0, x0_max) and c ~ U(0, 1) (fresh
per reset); a step does x += 0.1 + 0.1·a (a clipped to [-1, 1] by the TaskEnv), c unchanged. Task
reward = x' (after the step), native reward = 2x'. Task termination: x' > threshold.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.envs.acting import (EpisodeStats, flatten_env_major, make_collector,
                                     make_evaluator, summarize_episodes, uniform_random_policy)
from bremen_jax.envs import make_custom_task
from bremen_jax.types import Transition

from toys import ToyEnv


def toy_task(threshold=2.05, episode_length=15, x0_max=1.0):
    return make_custom_task(
        "toy", ToyEnv(x0_max),
        reward_fn=lambda obs, act, next_obs: next_obs[..., 0],
        done_fn=lambda next_obs: (next_obs[..., 0] > threshold).astype(jnp.float32),
        episode_length=episode_length)


def zero_policy(params, obs, key):
    del params, obs, key
    return jnp.zeros((1,))


N, T = 6, 50


@pytest.fixture(scope="module")
def random_data():
    task = toy_task()
    collect = jax.jit(make_collector(task, uniform_random_policy(1), N, T))
    tr, stats = collect(None, jax.random.key(0))
    return task, collect, tr, stats


def test_shapes_and_dtypes(random_data):
    _, _, tr, stats = random_data
    chex.assert_shape([tr.obs, tr.next_obs], (T, N, 2))
    chex.assert_shape(tr.action, (T, N, 1))
    chex.assert_shape([tr.reward, tr.done, tr.truncation], (T, N))
    chex.assert_type([tr.obs, tr.action, tr.reward, tr.next_obs, tr.done, tr.truncation],
                     jnp.float32)
    chex.assert_shape([stats.ended, stats.returns, stats.native_returns, stats.lengths], (T, N))
    chex.assert_type([stats.ended, stats.returns, stats.native_returns, stats.lengths],
                     [bool, jnp.float32, jnp.float32, jnp.int32])
    chex.assert_tree_all_finite(tr)
    assert np.all(np.abs(tr.action) <= 1.0)


def test_determinism(random_data):
    _, collect, tr, _ = random_data
    tr2, _ = collect(None, jax.random.key(0))
    chex.assert_trees_all_equal(tr, tr2)
    tr3, _ = collect(None, jax.random.key(1))
    assert not np.allclose(tr.obs, tr3.obs)
    assert not np.allclose(tr.action, tr3.action)


def test_jit_matches_no_jit(random_data):
    task, collect, tr, stats = random_data
    tr_eager, stats_eager = make_collector(task, uniform_random_policy(1), N, T)(
        None, jax.random.key(0))
    chex.assert_trees_all_close((tr, stats), (tr_eager, stats_eager), atol=1e-6)


def test_episode_bookkeeping_replay(random_data):
    """Replays each env on the host: resets, time limit, terminations, lengths, returns."""
    task, _, tr, stats = random_data
    tr, stats = jax.device_get((tr, stats))
    assert tr.done.sum() > 0 and tr.truncation.sum() > 0  # both kinds of ends occur
    for n in range(N):
        start, ret, native = 0, 0.0, 0.0
        for t in range(T):
            length = t + 1 - start
            ret += tr.reward[t, n]
            native += 2.0 * tr.next_obs[t, n, 0]
            x_expected = tr.obs[t, n, 0] + 0.1 + 0.1 * np.clip(tr.action[t, n, 0], -1, 1)
            np.testing.assert_allclose(tr.next_obs[t, n, 0], x_expected, rtol=1e-6)
            np.testing.assert_allclose(tr.reward[t, n], tr.next_obs[t, n, 0], rtol=1e-6)
            done = tr.next_obs[t, n, 0] > 2.05
            assert tr.done[t, n] == float(done)
            assert tr.truncation[t, n] == float(length == task.episode_length and not done)
            ended = done or length == task.episode_length
            assert stats.ended[t, n] == ended
            if ended:
                assert stats.lengths[t, n] == length
                np.testing.assert_allclose(stats.returns[t, n], ret, rtol=1e-5)
                np.testing.assert_allclose(stats.native_returns[t, n], native, rtol=1e-5)
                if t + 1 < T:  # fresh reset: x ~ U(0, 1), not the successor
                    assert 0.0 <= tr.obs[t + 1, n, 0] <= 1.0
                    assert not np.allclose(tr.obs[t + 1, n], tr.next_obs[t, n])
                start, ret, native = t + 1, 0.0, 0.0
            else:
                assert stats.lengths[t, n] == 0 and stats.returns[t, n] == 0.0
                if t + 1 < T:
                    np.testing.assert_array_equal(tr.obs[t + 1, n], tr.next_obs[t, n])


def test_truncation_at_exact_steps_and_fresh_resets():
    task = toy_task(threshold=1e9, episode_length=7)
    tr, stats = jax.jit(make_collector(task, zero_policy, 3, 30))(None, jax.random.key(3))
    expected = np.zeros((30, 3))
    expected[6::7] = 1.0  # steps 7, 14, 21, 28 end by the time limit
    np.testing.assert_array_equal(tr.truncation, expected)
    np.testing.assert_array_equal(tr.done, 0.0)
    np.testing.assert_array_equal(stats.lengths[6::7], 7)
    # With a = 0 each step adds exactly 0.1 to x: return = 7·x0 + 0.1·(1+...+7).
    x0 = tr.obs[0::7, :, 0][:4]
    np.testing.assert_allclose(stats.returns[6::7], 7 * x0 + 2.8, rtol=1e-5)
    # Each reset is a fresh sample (the c coordinate never changes within an episode).
    c_per_episode = np.asarray(tr.obs[0::7, :, 1])
    assert np.unique(c_per_episode).size == c_per_episode.size


def test_summarize_episodes_hand_computed():
    ended = jnp.array([[True, False], [False, False], [True, True]])
    stats = EpisodeStats(ended=ended,
                         returns=jnp.array([[3.0, 99.0], [0.0, 0.0], [5.0, -2.0]]),
                         native_returns=jnp.array([[1.0, 0.0], [0.0, 0.0], [2.0, 3.0]]),
                         lengths=jnp.array([[1, 0], [0, 0], [2, 3]], jnp.int32))
    out = jax.jit(summarize_episodes)(stats)
    np.testing.assert_allclose(out["return_mean"], 2.0)
    assert out["return_min"] == -2.0 and out["return_max"] == 5.0  # 99 is masked out
    np.testing.assert_allclose(out["native_return_mean"], 2.0)
    np.testing.assert_allclose(out["length_mean"], 2.0)
    assert out["num_episodes"] == 3
    empty = summarize_episodes(stats.replace(ended=jnp.zeros_like(ended)))
    assert empty["num_episodes"] == 0 and np.isnan(empty["return_mean"])


def test_flatten_env_major():
    x = jnp.arange(3 * 2 * 4, dtype=jnp.float32).reshape(3, 2, 4)  # [T=3, N=2, 4]
    r = jnp.arange(6, dtype=jnp.float32).reshape(3, 2)
    flat = flatten_env_major(Transition(x, x, r, x, r, r))
    chex.assert_shape(flat.obs, (6, 4))
    chex.assert_shape(flat.reward, (6,))
    np.testing.assert_array_equal(flat.reward, [0, 2, 4, 1, 3, 5])  # env 0's steps, then env 1's
    np.testing.assert_array_equal(flat.obs[1], x[1, 0])


def test_uniform_random_policy():
    pol = uniform_random_policy(3)
    acts = jax.vmap(pol, in_axes=(None, None, 0))(None, jnp.zeros(5),
                                                 jax.random.split(jax.random.key(0), 4000))
    chex.assert_shape(acts, (4000, 3))
    assert acts.dtype == jnp.float32
    assert float(acts.min()) >= -1.0 and float(acts.max()) <= 1.0
    np.testing.assert_allclose(acts.mean(0), 0.0, atol=0.05)
    np.testing.assert_allclose(acts.var(0), 1 / 3, atol=0.03)
    with pytest.raises(ValueError, match="action_size"):
        uniform_random_policy(0)


def test_evaluator_hand_computed():
    # Deterministic start x = 0, a = 0: x_t = 0.1 t, terminates when x > 2.05, i.e. at t = 21.
    task = toy_task(x0_max=0.0, episode_length=1000)
    out = jax.jit(make_evaluator(task, zero_policy, num_episodes=3))(None, jax.random.key(0))
    np.testing.assert_allclose(out["length_mean"], 21.0)
    np.testing.assert_allclose(out["return_mean"], 0.1 * 21 * 22 / 2, rtol=1e-5)
    np.testing.assert_allclose(out["native_return_mean"], 2 * 0.1 * 21 * 22 / 2, rtol=1e-5)
    np.testing.assert_allclose(out["return_std"], 0.0, atol=1e-5)
    # Time limit shorter than the episode.
    out = make_evaluator(task, zero_policy, num_episodes=2, max_steps=5)(None, jax.random.key(0))
    np.testing.assert_allclose(out["length_mean"], 5.0)
    np.testing.assert_allclose(out["return_mean"], 1.5, rtol=1e-5)
    assert "prefix_return_mean" not in out
    # The first 5 steps' return (what a 5-step model rollout predicts), the episode unchanged;
    # a prefix longer than the episode is the whole return.
    for prefix, expected in ((5, 1.5), (30, 0.1 * 21 * 22 / 2)):
        out = make_evaluator(task, zero_policy, num_episodes=2,
                             prefix_steps=prefix)(None, jax.random.key(0))
        np.testing.assert_allclose(out["prefix_return_mean"], expected, rtol=1e-5)
        np.testing.assert_allclose(out["return_mean"], 0.1 * 21 * 22 / 2, rtol=1e-5)


def test_evaluator_stochastic_starts_differ():
    task = toy_task(threshold=1e9, episode_length=4)
    out = make_evaluator(task, zero_policy, num_episodes=50)(None, jax.random.key(0))
    assert out["return_std"] > 0.1  # 4·x0 + 1, x0 ~ U(0, 1): std ≈ 1.15
    np.testing.assert_allclose(out["return_mean"], 4 * 0.5 + 1.0, atol=0.4)


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_envs=0), "num_envs"), (dict(num_envs=2.0), "num_envs"),
    (dict(num_steps=-1), "num_steps"), (dict(num_steps=True), "num_steps"),
])
def test_collector_validation(kwargs, field):
    args = dict(task=toy_task(), policy_fn=zero_policy, num_envs=2, num_steps=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        make_collector(**args)


def test_bad_task_and_policy():
    with pytest.raises(ValueError, match="task must be"):
        make_collector("halfcheetah", zero_policy, 2, 3)
    with pytest.raises(ValueError, match="policy_fn"):
        make_collector(toy_task(), None, 2, 3)
    with pytest.raises(ValueError, match="num_episodes"):
        make_evaluator(toy_task(), zero_policy, 0)
    with pytest.raises(ValueError, match="max_steps"):
        make_evaluator(toy_task(), zero_policy, 2, max_steps=0)
