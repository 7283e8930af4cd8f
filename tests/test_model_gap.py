"""eval/model_gap (algo/imagine.make_model_evaluator): the real evaluation's episodes played in the
learned model, with a hand-made 'model' whose episode returns are known."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np

from bremen_jax import config as config_lib
from bremen_jax.algo.imagine import ImaginedBatch, first_path_returns, make_model_evaluator
from bremen_jax.algo.phases import make_phases


def test_first_path_returns_by_hand():
    reward = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    end = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    z = jnp.zeros((3, 2))
    batch = ImaginedBatch(obs=z[..., None], action=z[..., None], reward=reward,
                          next_obs=z[..., None], terminated=end, path_end=end,
                          t=jnp.zeros((3, 2), jnp.int32), mask=jnp.ones((3, 2)))
    ret, length = first_path_returns(batch)
    np.testing.assert_array_equal(ret, [4.0, 2.0])       # 1 + 3 | 2
    np.testing.assert_array_equal(length, [2.0, 1.0])


def _counting_model(start):
    """obs[0] counts the steps from ``start``; reward = the action + 1 (the policy's mean is 0.5:
    1.5 a step); termination when obs[0] reaches 5."""
    task = types.SimpleNamespace(
        name="count", reset_obs=lambda key: jnp.array([start, 0.0]),
        reward_fn=lambda o, a, n: a[..., 0] + 1.0,
        done_fn=lambda n: (n[..., 0] >= 5.0).astype(jnp.float32))
    dynamics = types.SimpleNamespace(
        heads=False, cfg=types.SimpleNamespace(done_threshold=0.5),
        predict_step=lambda st, o, a, k: (o + jnp.array([1.0, 0.0]), None, None))
    policy = types.SimpleNamespace(
        dist=lambda p, o: (jnp.full(o.shape[:-1] + (1,), 0.5), jnp.full(o.shape[:-1] + (1,), -5.0)))
    return task, dynamics, policy


def test_model_episodes_by_hand():
    # from 0: steps to obs 1..5, terminated at the 5th: 5 x 1.5 = 7.5 (episode_length 8)
    model_eval = make_model_evaluator(*_counting_model(0.0), horizon=8, num_episodes=3)
    ret, length = jax.jit(model_eval)(None, None, 1, jax.random.key(0))
    np.testing.assert_allclose(ret, [7.5] * 3)
    np.testing.assert_allclose(length, [5.0] * 3)
    # cut by the episode length first: 3 steps, 4.5 (no exploration noise: sigma 0)
    model_eval = make_model_evaluator(*_counting_model(-10.0), horizon=3, num_episodes=2)
    ret, length = model_eval(None, None, 1, jax.random.key(1))
    np.testing.assert_allclose(ret, [4.5, 4.5])
    np.testing.assert_allclose(length, [3.0, 3.0])


def test_evaluate_logs_the_gap_and_keeps_the_real_numbers():
    cfg = config_lib.load_config("test")
    runs, state = {}, None
    for flag in (True, False):
        static, hp = config_lib.split(config_lib.apply_overrides(
            cfg, [f"eval.model_return={flag}"]))
        phases = make_phases(static)
        if state is None:  # collection and fit do not depend on the flag: once for both
            state = phases.init(jax.random.key(0))
            state, _ = jax.jit(phases.collect)(state, hp)
            state, _ = jax.jit(phases.fit_dynamics)(state, hp)
        runs[flag] = jax.jit(phases.evaluate)(state, hp)
    (s_on, m_on), (s_off, m_off) = runs[True], runs[False]
    chex.assert_trees_all_equal(jax.random.key_data(s_on.key), jax.random.key_data(s_off.key))
    for k, v in m_off.items():                     # the real evaluation is untouched
        np.testing.assert_array_equal(v, m_on[k], err_msg=k)
    assert set(m_on) - set(m_off) == {"eval/model_return_mean", "eval/model_gap",
                                      "eval/prefix_return_mean"}
    assert np.isfinite(float(m_on["eval/model_return_mean"]))
    assert float(m_on["eval/model_gap"]) == float(m_on["eval/model_return_mean"]
                                                  - m_on["eval/prefix_return_mean"])
    # test config: H = 20 of 50-step episodes, +1 a step while up: the first 20 steps' return
    assert 1.0 <= float(m_on["eval/prefix_return_mean"]) <= min(
        20.0, float(m_on["eval/return_mean"]))


def test_member_min_is_the_lowest_active_members_return_on_fixed_starts():
    """``eval.member_rollouts > 0`` adds ``eval/model_return_min``: the member evaluator's
    lowest return among the active members, from start states that do not depend on the run's
    key (the same at every evaluation); the other metrics are untouched."""
    from bremen_jax.algo import phases as phases_lib
    from bremen_jax.algo.imagine import make_member_evaluator

    cfg = config_lib.apply_overrides(config_lib.load_config("test"),
                                     ["dynamics.num_members=3", "dynamics.num_active=2"])
    static0, hp = config_lib.split(cfg)
    static, _ = config_lib.split(config_lib.apply_overrides(cfg, ["eval.member_rollouts=4"]))
    phases = make_phases(static)
    state = phases.init(jax.random.key(0))
    state, _ = jax.jit(phases.collect)(state, hp)
    state, _ = jax.jit(phases.fit_dynamics)(state, hp)
    evaluate = jax.jit(phases.evaluate)
    _, m = evaluate(state, hp)
    _, m_other_key = evaluate(state.replace(key=jax.random.key(7)), hp)
    _, m_off = jax.jit(make_phases(static0).evaluate)(state, hp)
    assert set(m) - set(m_off) == {"eval/model_return_min"}
    for k, v in m_off.items():
        np.testing.assert_array_equal(v, m[k], err_msg=k)
    member_eval = make_member_evaluator(phases.task, phases.dynamics, phases.policy,
                                        horizon=static.imagine.horizon, num_rollouts=4)
    each = np.asarray(jax.jit(member_eval)(state.dynamics, state.learner.policy,
                                           jax.random.key(phases_lib._MEMBER_EVAL_SEED)))
    assert each.shape == (3,) and np.all(np.isfinite(each))
    np.testing.assert_allclose(float(m["eval/model_return_min"]), each[:2].min(), rtol=1e-6)
    # fixed starts: another run key gives the same estimate (the real episodes differ)
    assert float(m_other_key["eval/model_return_min"]) == float(m["eval/model_return_min"])
