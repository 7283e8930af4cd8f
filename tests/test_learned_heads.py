"""Learned reward and termination heads; tasks without analytic functions (issue 14, item 4).

Hand-checked loss and validation errors on tiny arrays (a constant network: zero kernels, known
output bias), the reward de-normalisation, ``make_custom_task`` without functions (the env's own
reward/done, one-line errors), the ``dynamics.reward_model`` resolution, a tiny end-to-end run of a
task the package does not ship, and (slow) halfcheetah random data: the reward head's normalised
validation error and imagined returns under learned vs analytic rewards.
"""

from __future__ import annotations

import json
import pathlib
import math

import brax.envs
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.algo.imagine import make_imagined_rollout
from bremen_jax.config import ConfigError, DynamicsConfig, DynamicsHParams
from bremen_jax.envs import make_custom_task, make_task, register_task
from bremen_jax.models.dynamics import (
    compute_normalizer,
    make_dynamics,
    resolve_reward_model,
)
from bremen_jax.models.policy import PolicyConfig, make_policy
from bremen_jax.types import Transition

LN2 = math.log(2.0)


def _heads(obs_dim=1, act_dim=1, **kw):
    cfg = DynamicsConfig(num_members=1, hidden_sizes=(2,), reward_model="learned", **kw)
    return make_dynamics(obs_dim, act_dim, cfg)


def _constant(dyn, out_bias):
    """Params ``[E=1]`` of a network whose output is ``out_bias`` for every input."""
    params = jax.tree.map(jnp.zeros_like, dyn.init(jax.random.key(0)).params)
    params["params"]["output"]["bias"] = jnp.asarray([out_bias], jnp.float32)
    return params


def test_head_loss_and_validation_errors_by_hand():
    dyn = _heads()
    params = _constant(dyn, [1.0, 0.5, 0.0])                 # Δ̂ = 1, r̂ = 0.5, logit 0
    member = jax.tree.map(lambda p: p[0], params)
    x = jnp.zeros((2, 2))
    y = jnp.array([[0.0, 1.5, 1.0], [2.0, 0.5, 0.0]])         # targets [Δ, r, done]
    # Row 1: (1-0)² + (0.5-1.5)² + CE(0, 1) = 1 + 1 + ln 2; row 2: 1 + 0 + CE(0, 0) = 1 + ln 2.
    _, mse = dyn._member_loss(member, x, y, jnp.array([0.5, 0.5]), 0.0)
    np.testing.assert_allclose(mse, 1.5 + LN2, rtol=1e-6)
    # CE(2, 1) = log(1 + e^-2) = 0.126928.
    _, ce = dyn._member_loss(jax.tree.map(lambda p: p[0], _constant(dyn, [0.0, 0.0, 2.0])),
                             x[:1], jnp.array([[0.0, 0.0, 1.0]]), jnp.ones(1), 0.0)
    np.testing.assert_allclose(ce, 0.126928, rtol=1e-5)

    errs = dyn.head_errors(params, x, y, jnp.array([True, True]))
    # sigmoid(0) = 0.5 is not > 0.5: "not done", wrong on row 1 only.
    expected = {"val_obs_nmse": 1.0, "val_reward_nmse": 0.5, "val_done_ce": LN2,
                "val_done_error": 0.5}
    for k, v in expected.items():
        np.testing.assert_allclose(errs[k], [v], rtol=1e-6, err_msg=k)
    np.testing.assert_allclose(dyn._masked_mse(params, x, y, jnp.array([True, True])),
                               [1.0 + 0.5 + LN2], rtol=1e-6)


def test_head_targets_and_reward_denormalisation():
    dyn = _heads(obs_dim=2)
    data = Transition(obs=jnp.array([[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]]),
                      action=jnp.array([[0.0], [1.0], [2.0]]), reward=jnp.array([1.0, 3.0, 9.0]),
                      next_obs=jnp.array([[1.0, 1.0], [1.0, 4.0], [0.0, 0.0]]),
                      done=jnp.array([0.0, 1.0, 0.0]), truncation=jnp.zeros(3))
    norm = compute_normalizer(data, jnp.array([True, True, False]), reward=True)
    np.testing.assert_allclose([norm.reward_mean, norm.reward_std], [2.0, 1.0])
    y = dyn.targets(norm, data)
    np.testing.assert_allclose(y[:, 2], [-1.0, 1.0, 7.0], rtol=1e-6)   # (r - 2) / 1
    np.testing.assert_array_equal(y[:, 3], [0.0, 1.0, 0.0])
    state = dyn.init(jax.random.key(0)).replace(params=_constant(dyn, [0.0, 0.0, 0.5, -1.0]),
                                                 norm=norm)
    next_obs, reward, logit = dyn.predict_step(state, data.obs, data.action, jnp.int32(0))
    np.testing.assert_allclose(reward, [2.5] * 3)                     # 1 * 0.5 + 2
    np.testing.assert_allclose(logit, [-1.0] * 3)
    np.testing.assert_allclose(next_obs, data.obs + norm.delta_mean, rtol=1e-6)
    # The analytic ensemble keeps its pytree: o outputs, no reward statistics.
    plain = make_dynamics(2, 1, DynamicsConfig(num_members=1, hidden_sizes=(2,)))
    assert not plain.heads
    assert plain.init(jax.random.key(0)).params["params"]["output"]["kernel"].shape == (1, 2, 2)
    assert state.params["params"]["output"]["kernel"].shape == (1, 2, 4)
    assert compute_normalizer(data, jnp.ones(3, bool)).reward_mean is None


@pytest.fixture(scope="module")
def native_task():
    env = brax.envs.get_environment("inverted_pendulum", backend="positional")
    return make_custom_task("pendulum_native", env, episode_length=50)


def test_custom_task_without_functions_uses_the_envs_reward_and_done(native_task):
    task = native_task
    assert not task.analytic and task.reward_fn is None and task.done_fn is None
    assert make_task("inverted_pendulum", backend="positional").analytic
    step = jax.jit(task.env.step)
    state = task.reset(jax.random.key(0))
    for _ in range(3):
        state = step(state, jnp.array([5.0]))
        np.testing.assert_array_equal(state.reward, state.metrics["native_reward"])
        np.testing.assert_array_equal(state.done, state.metrics["native_done"])
    assert float(state.reward) == 1.0


def test_custom_task_and_reward_model_errors(native_task):
    env = native_task.env.env
    with pytest.raises(ValueError, match="reward_fn given without done_fn; pass both"):
        make_custom_task("x", env, reward_fn=lambda o, a, n: n[..., 0], episode_length=5)
    with pytest.raises(ValueError, match="done_fn given without reward_fn"):
        make_custom_task("x", env, done_fn=lambda n: n[..., 0], episode_length=5)
    with pytest.raises(ValueError, match="reward_fn must be callable"):
        make_custom_task("x", env, 3, 4, episode_length=5)
    assert resolve_reward_model(DynamicsConfig(), True).reward_model == "analytic"
    assert resolve_reward_model(DynamicsConfig(), False).reward_model == "learned"
    learned = DynamicsConfig(reward_model="learned")
    assert resolve_reward_model(learned, True) is learned            # the switch on a built-in
    with pytest.raises(ConfigError, match="^task 'pendulum_native' has no analytic reward_fn/"
                                          "done_fn; set dynamics.reward_model to 'learned'"):
        resolve_reward_model(DynamicsConfig(reward_model="analytic"), False, "pendulum_native")
    with pytest.raises(ConfigError, match="dynamics.reward_model must be one of"):
        DynamicsConfig(reward_model="maybe")
    with pytest.raises(ConfigError, match=r"dynamics.done_threshold must be in \(0, 1\)"):
        DynamicsConfig(done_threshold=1.0)
    dyn = make_dynamics(4, 1, DynamicsConfig(num_members=1, hidden_sizes=(4,)))
    pol = make_policy(PolicyConfig(obs_dim=4, act_dim=1, hidden_sizes=(4,)))
    with pytest.raises(ValueError, match="task 'pendulum_native' has no analytic"):
        make_imagined_rollout(native_task, dyn, pol, horizon=5, num_rollouts=2)


def _pendulum_native(backend="positional", **kw):
    env = brax.envs.get_environment("inverted_pendulum", backend=backend, **kw)
    return make_custom_task("pendulum_native", env, episode_length=50)


def test_task_without_functions_trains_end_to_end(tmp_path):
    """The `test` config on a registered task without functions: learned heads, finite rows."""
    from bremen_jax.run import run_host

    register_task("pendulum_native", _pendulum_native, overwrite=True)
    cfg = config_lib.load_config("test")
    cfg.task = "pendulum_native"
    result = run_host(cfg, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "deployments.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and len(result.metrics) == 2
    for row in rows:
        for k in ("dynamics/val_reward_nmse", "dynamics/val_done_error", "dynamics/val_done_ce",
                  "dynamics/val_obs_nmse", "return"):
            assert np.isfinite(row[k]), (k, row)
        assert 0.0 <= row["dynamics/val_done_error"] <= 1.0
    # The run's own reward is the env's (1 per step alive): returns are episode lengths.
    assert rows[0]["collect/return_mean"] == rows[0]["collect/length_mean"]


@pytest.mark.slow
def test_halfcheetah_learned_reward_matches_analytic(optimized):
    """Random halfcheetah data (positional backend): reward head vs the analytic reward.

    5000 uniform-random transitions; a 3-member 128x128 ensemble with heads, 100 epochs. Then
    imagined rollouts (H = 25, 100 rollouts, the same starts, policy, members and keys) are scored
    twice along the same imagined states: by the reward head (``ImaginedBatch.reward``) and by the
    task's analytic ``reward_fn``. The tolerance on the mean return is 5% of the returns' spread
    plus 5% of |mean|: per-step head errors (normalised val MSE ~0.01, i.e. ~0.1 sigma_r) average
    out over rollouts, but a bias on imagined states away from the data remains.
    """
    from bremen_jax.data import buffer as buffer_lib
    from bremen_jax.envs.acting import (
        flatten_env_major,
        make_collector,
        uniform_random_policy,
    )

    task = make_task("halfcheetah", backend="positional")
    # Collection and fit at LLVM -O3 (``optimized``): they run, not compile, most of the time.
    collect = optimized(make_collector(task, uniform_random_policy(task.action_size), 20, 250),
                        None, jax.random.key(0))
    data = flatten_env_major(collect(None, jax.random.key(0))[0])
    buf = buffer_lib.insert(buffer_lib.init_buffer(5000, task.obs_size, task.action_size, 1),
                            data, 0.15)
    cfg = DynamicsConfig(num_members=3, hidden_sizes=(128, 128), batch_size=100, max_epochs=100,
                         reward_model="learned")
    dyn = make_dynamics(task.obs_size, task.action_size, cfg)
    args = (dyn.init(jax.random.key(1)), buf.data, buffer_lib.train_mask(buf),
            buffer_lib.val_mask(buf), DynamicsHParams.create(num_active=3), jax.random.key(2))
    state, m = optimized(dyn.fit, *args)(*args)
    assert np.all(np.asarray(m["val_reward_nmse"]) < 0.1), jax.device_get(m)
    assert np.all(np.asarray(m["val_done_error"]) == 0.0)   # halfcheetah never terminates

    pol = make_policy(PolicyConfig(obs_dim=task.obs_size, act_dim=task.action_size,
                                   hidden_sizes=(16, 16)))
    roll = jax.jit(make_imagined_rollout(task, dyn, pol, horizon=25, num_rollouts=100))
    b = roll(state, pol.init(jax.random.key(3)), jnp.float32(0.5), jnp.int32(3),
             jax.random.key(4))
    analytic = task.reward_fn(b.obs, jnp.clip(b.action, -1.0, 1.0), b.next_obs)
    ret_learned = np.asarray(jnp.sum(b.reward * b.mask, 0))
    ret_analytic = np.asarray(jnp.sum(analytic * b.mask, 0))
    gap = abs(ret_learned.mean() - ret_analytic.mean())
    tol = 0.05 * ret_analytic.std() + 0.05 * abs(ret_analytic.mean())
    assert gap < tol, (ret_learned.mean(), ret_analytic.mean(), ret_analytic.std())


def test_example_files_load_and_register_reacher():
    """examples/reacher.py and its five-seed sweep load (the sweep's base config registers the
    task); nothing is compiled."""
    from bremen_jax.envs import registry
    from bremen_jax.sweep.spec import load_sweep

    root = pathlib.Path(__file__).resolve().parents[1] / "examples"
    cfg, spec = load_sweep(str(root / "reacher_seeds.py"))
    assert cfg.task == "reacher" and cfg.dynamics.reward_model == "auto"
    assert tuple(spec.seeds) == (0, 1, 2, 3, 4)
    assert "reacher" in registry.list_tasks()
