"""Tests for bremen_jax.envs: built-in BREMEN tasks on Brax, the registry and custom tasks.

The central checks: on real random-action transitions the observation-space ``reward_fn``/``done_fn``
(used for imagined rollouts, and by the real TaskEnv) agree with the same reward and termination
written independently on the physical state (``q``, ``qd``, ``x``; see ``PHYSICS``), which pins
the observation layouts; and the collected data are consistent with them. Both come from ONE
compiled collector per task (a module-scoped fixture whose env also reports the physical-state
oracle of each step; ~15-30 s to compile on a busy 2-core CPU).
"""

import dataclasses
import warnings

import brax.envs
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.envs import (VALID_BACKENDS, Task, UnstablePhysicsWarning, check_backend, get_spec,
                             list_tasks, make_custom_task, make_task, register_task, task_info,
                             task_specs)
from bremen_jax.envs.acting import make_collector
from bremen_jax.envs.tasks import (ant, cheetah_run, halfcheetah, hopper, inverted_pendulum,
                                   walker2d)

BUILTINS = ["halfcheetah", "hopper", "walker2d", "ant", "inverted_pendulum"]
OBS_SIZES = {"halfcheetah": 17, "hopper": 11, "walker2d": 17, "ant": 27, "inverted_pendulum": 4,
             "cheetah_run": 17}
ACT_SIZES = {"halfcheetah": 6, "hopper": 3, "walker2d": 6, "ant": 8, "inverted_pendulum": 1,
             "cheetah_run": 6}
NUM_ENVS, NUM_STEPS, EP_LEN = 10, 100, 40
COLLECT_KEY = 7
ACTION_RANGE = 1.2  # random actions beyond [-1, 1]: the env and the reward fns must clip them


# The original BREMEN rewards / terminations on the physical state before/after a step (reference
# §6): an independent oracle for the observation-space functions. ``a`` is the clipped action.
def _ctrl(a):
    return jnp.sum(jnp.square(a))


def _hopper_alive(ps1):
    z, rest = ps1.x.pos[0, 2], jnp.concatenate([ps1.q[2:], ps1.qd])
    return (jnp.isfinite(z) & jnp.all(jnp.isfinite(rest)) & jnp.all(jnp.abs(rest) < 100.0)
            & (z > 0.7) & (jnp.abs(ps1.q[2]) < 0.2))


def _walker_alive(ps1):
    z, angle = ps1.x.pos[0, 2], ps1.q[2]
    return (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)


def _pendulum_alive(ps1):
    finite = jnp.all(jnp.isfinite(ps1.q)) & jnp.all(jnp.isfinite(ps1.qd))
    return (jnp.abs(ps1.q[1]) <= 0.2) & finite


def _always_alive(ps1):
    return jnp.bool_(True)


PHYSICS = {  # name: ((ps0, a, ps1) -> reward, ps1 -> alive)
    "halfcheetah": (lambda ps0, a, ps1: ps0.qd[0] - 0.1 * _ctrl(a), _always_alive),
    "ant": (lambda ps0, a, ps1: ps0.qd[0] - 0.1 * _ctrl(a) - 3.0 * jnp.square(ps0.q[2] - 0.57)
            + 1.0, _always_alive),
    "hopper": (lambda ps0, a, ps1: ps1.qd[0] - 1e-3 * _ctrl(a) + 1.0, _hopper_alive),
    "walker2d": (lambda ps0, a, ps1: ps1.qd[0] - 1e-3 * _ctrl(a) + 1.0, _walker_alive),
    "inverted_pendulum": (lambda ps0, a, ps1: jnp.ones(()), _pendulum_alive),
}


class _OracleEnv(brax.envs.Wrapper):
    """The task's env with ``(oracle reward, oracle done, reward_fn, done_fn)`` of each step
    appended to the observation (zeros after a reset): the physical-state oracle and the
    observation-space functions, computed in the compiled step (as the env's own reward is). The
    wrapped TaskEnv sees its own observations."""

    def __init__(self, task):
        super().__init__(task.env)
        self._size = task.obs_size
        self._reward_fn, self._done_fn = task.reward_fn, task.done_fn
        self._reward_phys, self._alive_phys = PHYSICS[task.name]

    def reset(self, rng):
        state = self.env.reset(rng)
        return state.replace(obs=jnp.concatenate([state.obs, jnp.zeros(4, jnp.float32)]))

    def step(self, state, action):
        obs = state.obs[:self._size]
        nxt = self.env.step(state.replace(obs=obs), action)
        a = jnp.clip(action, -1.0, 1.0)
        extra = jnp.stack([self._reward_phys(state.pipeline_state, a, nxt.pipeline_state),
                           1.0 - self._alive_phys(nxt.pipeline_state).astype(jnp.float32),
                           self._reward_fn(obs, action, nxt.obs), self._done_fn(nxt.obs)])
        return nxt.replace(obs=jnp.concatenate([nxt.obs, extra.astype(jnp.float32)]))


def _policy(action_size):
    def policy_fn(params, obs, key):
        return jax.random.uniform(key, (action_size,), jnp.float32, -ACTION_RANGE, ACTION_RANGE)
    return policy_fn


@pytest.fixture(scope="module", params=BUILTINS)
def rollout(request):
    """(task, Transition [T, N], EpisodeStats, (oracle, fns)): the collector
    on 10 envs x 100 random steps (U(±1.2) actions), 40-step episodes.

    ONE compiled program per task serves every check below: the collector runs the task's env
    wrapped by ``_OracleEnv``, so each transition also carries the physical-state oracle and the
    observation-space functions of its step (``(reward, done)`` each ``[T, N]``; appended to
    ``next_obs``, cut off here). Episodes are reset after a fall or the time limit, so the oracle
    is checked on every step up to and including each fall (no longer on states long after one,
    which the former separate no-reset program also covered; the terminations are what matter).
    """
    task = make_task(request.param, episode_length=EP_LEN)
    wrapped = dataclasses.replace(task, env=_OracleEnv(task))
    collect = jax.jit(make_collector(wrapped, _policy(task.action_size), NUM_ENVS, NUM_STEPS))
    tr, stats = jax.device_get(collect(None, jax.random.key(COLLECT_KEY)))
    extra = [tr.next_obs[..., task.obs_size + i] for i in range(4)]
    tr = tr.replace(obs=tr.obs[..., :task.obs_size], next_obs=tr.next_obs[..., :task.obs_size])
    return task, tr, stats, (tuple(extra[:2]), tuple(extra[2:]))


# ------------------------------------------------------------------------------------------------
# Real env vs observation-space functions.

def test_reward_and_done_fns_match_real_env(rollout):
    task, tr, _, _ = rollout
    chex.assert_shape(tr.obs, (NUM_STEPS, NUM_ENVS, task.obs_size))
    chex.assert_shape(tr.action, (NUM_STEPS, NUM_ENVS, task.action_size))
    chex.assert_tree_all_finite(tr)
    assert np.abs(tr.action).max() > 1.0  # the clipping is exercised
    reward = task.reward_fn(tr.obs, tr.action, tr.next_obs)
    done = task.done_fn(tr.next_obs)
    chex.assert_shape([reward, done], (NUM_STEPS, NUM_ENVS))
    assert reward.dtype == jnp.float32 and done.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(reward - tr.reward))) <= 1e-4
    np.testing.assert_array_equal(np.asarray(done), tr.done)
    # Not a vacuous comparison: rewards vary.
    assert np.std(tr.reward) > 1e-3 or task.name == "inverted_pendulum"


def test_reward_and_done_fns_match_physical_state(rollout):
    task, tr, _, ((r_phys, d_phys), (r_fn, d_fn)) = rollout
    r_env, d_env = tr.reward, tr.done
    chex.assert_shape([r_phys, d_phys, r_fn, d_fn], (NUM_STEPS, NUM_ENVS))
    finite = np.isfinite(r_phys)
    assert finite.mean() > 0.9, f"{task.name}: physics blew up"
    np.testing.assert_allclose(r_fn[finite], r_phys[finite], atol=1e-4, rtol=1e-5)
    np.testing.assert_array_equal(d_fn, d_phys)
    # The real env reports exactly the observation-space functions (defined once, in the spec).
    np.testing.assert_array_equal(r_env, r_fn)
    np.testing.assert_array_equal(d_env, d_fn)
    assert np.std(r_phys[finite]) > 1e-3 or task.name == "inverted_pendulum"
    if task.name in ("hopper", "walker2d", "inverted_pendulum"):
        assert d_phys.sum() > 0, f"{task.name}: random actions should make it fall"


def test_terminations_occur_where_expected(rollout):
    task, tr, stats, _ = rollout
    n_done = int(tr.done.sum())
    if task.name in ("hopper", "walker2d", "inverted_pendulum"):
        assert n_done >= 5, f"{task.name}: random actions should make it fall ({n_done} falls)"
    else:  # halfcheetah / ant never terminate (reference §6)
        assert n_done == 0
        np.testing.assert_array_equal(tr.truncation[EP_LEN - 1::EP_LEN], 1.0)
    assert int(stats.ended.sum()) == int(tr.done.sum() + tr.truncation.sum())


def test_episode_returns_and_lengths_from_rewards(rollout):
    _, tr, stats, _ = rollout
    ended = np.logical_or(tr.done > 0, tr.truncation > 0)
    np.testing.assert_array_equal(stats.ended, ended)
    for n in range(NUM_ENVS):
        start = 0
        for t in np.nonzero(ended[:, n])[0]:
            assert stats.lengths[t, n] == t + 1 - start
            np.testing.assert_allclose(stats.returns[t, n], tr.reward[start:t + 1, n].sum(),
                                       rtol=1e-5, atol=1e-3)
            start = t + 1


def test_reset_obs_is_the_env_reset_observation(rollout):
    task, tr, _, _ = rollout
    # The collector's first step resets env n with split(split(split(key, T)[0])[0], N)[n].
    key_step0 = jax.random.split(jax.random.key(COLLECT_KEY), NUM_STEPS)[0]
    key_reset = jax.random.split(key_step0)[0]
    obs0 = jax.vmap(task.reset_obs)(jax.random.split(key_reset, NUM_ENVS))
    np.testing.assert_allclose(np.asarray(obs0), tr.obs[0], atol=1e-6)


def test_task_metadata(rollout):
    task, _, _, _ = rollout
    assert isinstance(task, Task)
    assert task.obs_size == OBS_SIZES[task.name]
    assert task.action_size == ACT_SIZES[task.name]
    assert task.env.observation_size == task.obs_size
    assert task.backend == "generalized" and task.episode_length == EP_LEN


def test_default_episode_length_and_metrics():
    task = make_task("halfcheetah")
    assert task.episode_length == 1000
    state = jax.eval_shape(task.reset, jax.random.key(0))
    assert {"native_reward", "native_done"} <= set(state.metrics)
    chex.assert_shape(state.obs, (17,))


# ------------------------------------------------------------------------------------------------
# Hand-computed reward / termination values (no physics).

def _obs(size, **entries):
    o = np.zeros(size, np.float32)
    for k, v in entries.items():
        o[int(k[1:])] = v
    return jnp.asarray(o)


def test_reward_fns_hand_computed():
    a6 = jnp.array([2.0, -3.0, 0.5, 0.0, 0.0, 0.0])  # clipped: [1, -1, .5, 0...], ‖a‖² = 2.25
    o = _obs(17, i8=3.0, i0=1.2)
    o2 = _obs(17, i8=-1.0)
    assert np.isclose(halfcheetah.reward(o, a6, o2), 3.0 - 0.225)
    assert np.isclose(cheetah_run.reward(o, a6, o2), 0.3)
    assert np.isclose(cheetah_run.reward(o * 10, a6, o2), 1.0)
    assert np.isclose(walker2d.reward(o2, a6, o), 3.0 - 1e-3 * 2.25 + 1.0)
    a3 = jnp.array([0.5, 5.0, -0.5])  # ‖clip(a)‖² = 1.5
    assert np.isclose(hopper.reward(_obs(11), a3, _obs(11, i5=2.0)), 2.0 - 1.5e-3 + 1.0)
    a8 = jnp.full((8,), 0.5)  # ‖a‖² = 2
    ant_o = _obs(27, i13=1.5, i0=0.77)
    assert np.isclose(ant.reward(ant_o, a8, _obs(27)), 1.5 - 0.2 - 3 * 0.04 + 1.0)
    assert inverted_pendulum.reward(_obs(4), jnp.zeros(1), _obs(4)) == 1.0


def test_done_fns_hand_computed():
    hop = hopper.done
    assert hop(_obs(11, i0=1.2, i1=0.1)) == 0.0
    assert hop(_obs(11, i0=0.6, i1=0.1)) == 1.0          # too low
    assert hop(_obs(11, i0=1.2, i1=0.25)) == 1.0         # tilted
    assert hop(_obs(11, i0=1.2, i7=150.0)) == 1.0        # |s'[1:]| >= 100
    assert hop(_obs(11, i0=150.0)) == 0.0                # s'[0] is not bounded by 100
    assert hop(_obs(11, i0=1.2, i4=np.nan)) == 1.0       # non-finite
    wal = walker2d.done
    assert wal(_obs(17, i0=1.2, i1=0.9)) == 0.0
    assert wal(_obs(17, i0=2.1)) == 1.0 and wal(_obs(17, i0=0.7)) == 1.0
    assert wal(_obs(17, i0=1.2, i1=-1.1)) == 1.0
    assert wal(_obs(17, i0=1.2, i10=1e4)) == 0.0         # velocities unconstrained
    pend = inverted_pendulum.done
    assert pend(_obs(4, i1=0.19)) == 0.0 and pend(_obs(4, i1=-0.21)) == 1.0
    assert pend(_obs(4, i2=np.inf)) == 1.0
    assert halfcheetah.done(_obs(17, i0=np.nan)) == 0.0
    assert ant.done(_obs(27, i0=-5.0)) == 0.0


@pytest.mark.parametrize("name", sorted(OBS_SIZES))
def test_fns_broadcast_over_leading_shape(name):
    spec = get_spec(name)
    assert spec.obs_size == OBS_SIZES[name]
    key_o, key_a = jax.random.split(jax.random.key(0))
    obs = jax.random.normal(key_o, (2, 3, OBS_SIZES[name]))
    act = 2.0 * jax.random.normal(key_a, (2, 3, ACT_SIZES[name]))
    r, d = spec.reward_fn(obs, act, obs), spec.done_fn(obs)
    chex.assert_shape([r, d], (2, 3))
    chex.assert_type([r, d], jnp.float32)
    assert set(np.unique(np.asarray(d))) <= {0.0, 1.0}
    # Row-wise consistent with single-observation calls.
    np.testing.assert_allclose(r[1, 2], spec.reward_fn(obs[1, 2], act[1, 2], obs[1, 2]), rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Reset distributions (reference §7), via the cheap analytic sampler (checked against env.reset
# above).

def test_reset_distributions():
    keys = jax.random.split(jax.random.key(1), 2000)
    hc = np.asarray(jax.vmap(make_task("halfcheetah").reset_obs)(keys))
    assert np.all(np.abs(hc[:, :8]) <= 0.1) and np.abs(hc[:, :8]).max() > 0.09  # qpos + U(±0.1)
    np.testing.assert_allclose(hc[:, 8:].std(0), 0.1, rtol=0.1)                  # qvel ~ 0.1 N(0,1)
    hop = np.asarray(jax.vmap(make_task("hopper").reset_obs)(keys))
    np.testing.assert_allclose(hop[:, 0], 1.25, atol=0.005 + 1e-6)               # torso height
    assert np.all(np.abs(hop[:, 1:]) <= 0.005 + 1e-7)                             # ± U(0.005)
    ant = np.asarray(jax.vmap(make_task("ant").reset_obs)(keys))
    np.testing.assert_allclose(ant[:, 0], 0.55, atol=0.1 + 1e-6)  # Brax init_qpos z (Gym: 0.75)
    # Fresh samples: different keys give different observations.
    assert np.unique(hc[:, 0]).size == hc.shape[0]


# ------------------------------------------------------------------------------------------------
# Registry.

def test_builtins_registered():
    assert set(BUILTINS) | {"cheetah_run"} <= set(list_tasks())


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="unknown task 'cheetah'.*halfcheetah"):
        make_task("cheetah")


def test_unknown_backend_lists_valid_backends():
    with pytest.raises(ValueError, match="unknown backend 'physx'.*generalized.*mjx"):
        make_task("hopper", backend="physx")
    assert VALID_BACKENDS == ("generalized", "positional", "spring", "mjx")
    assert VALID_BACKENDS is config_lib.BACKENDS  # one list, defined in the config


def test_every_task_module_is_registered_with_its_spec():
    modules = [ant, cheetah_run, halfcheetah, hopper, inverted_pendulum, walker2d]
    assert {m.SPEC.name for m in modules} == set(task_specs()) == set(OBS_SIZES)
    for m in modules:
        assert get_spec(m.SPEC.name) is m.SPEC
        assert m.SPEC.reward_fn is m.reward and m.SPEC.done_fn is m.done
        assert m.SPEC.obs_size == OBS_SIZES[m.SPEC.name]
        assert m.SPEC.default_backend in VALID_BACKENDS
        assert set(m.SPEC.unstable_backends) <= set(VALID_BACKENDS) - {m.SPEC.default_backend}


def test_task_info():
    info = task_info("ant")
    assert (info.brax_env, info.default_backend, info.episode_length) == ("ant", "mjx", 1000)
    assert "backend='mjx'" in info.unstable_backends["generalized"]
    assert task_info("cheetah_run").brax_env == "halfcheetah"
    assert task_info("inverted_pendulum").default_backend == "positional"
    assert not task_info("hopper").unstable_backends and task_info("hopper").description
    register_task("fast_info", _fast_task, overwrite=True)
    assert task_info("fast_info").brax_env is None
    with pytest.raises(ValueError, match="registered with a factory"):
        get_spec("fast_info")
    with pytest.raises(ValueError, match="unknown task 'cheetah'"):
        task_info("cheetah")


def test_ant_on_generalized_warns_and_names_the_fix():
    with pytest.warns(UnstablePhysicsWarning, match="backend='mjx'"):
        check_backend("ant", "generalized")
    with pytest.warns(UnstablePhysicsWarning, match="task='ant' with backend='generalized'"):
        make_task("ant", backend="generalized")
    assert config_lib.load_config("ant").backend == get_spec("ant").default_backend == "mjx"


@pytest.mark.parametrize("name", config_lib.known_configs())
def test_shipped_configs_use_stable_physics(name):
    cfg = config_lib.load_config(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnstablePhysicsWarning)
        check_backend(cfg.task, cfg.backend)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_bad_episode_length(bad):
    with pytest.raises(ValueError, match="episode_length"):
        make_task("halfcheetah", episode_length=bad)


def test_other_backends_build():
    task = make_task("halfcheetah", backend="spring")
    assert task.backend == "spring" and task.env.backend == "spring"
    assert float(task.env.dt) == pytest.approx(0.05)  # same control dt as the original


def _fast_task(threshold: float = 0.05, episode_length: int = 30, **_):
    """Brax's physics-free 'fast' env: obs = [x, v], v += 0.02 when a > 0, x += 0.02 v."""
    env = brax.envs.get_environment("fast")
    return make_custom_task(
        "fast_custom", env,
        reward_fn=lambda obs, act, next_obs: 10.0 * next_obs[..., 0] + jnp.sum(act, -1),
        done_fn=lambda next_obs: (next_obs[..., 0] > threshold).astype(jnp.float32),
        episode_length=episode_length)


def test_register_custom_task_and_collect():
    register_task("fast_custom", _fast_task, overwrite=True)
    assert "fast_custom" in list_tasks()
    task = make_task("fast_custom", backend="generalized", episode_length=25)
    assert task.obs_size == 2 and task.action_size == 1 and task.backend == "custom"
    assert task.episode_length == 25
    collect = jax.jit(make_collector(task, lambda p, o, k: jnp.array([3.0]), 4, 60))
    tr, stats = collect(None, jax.random.key(0))
    # The TaskEnv clipped the action (3 -> 1) before scoring and stepping.
    np.testing.assert_allclose(tr.reward, 10.0 * tr.next_obs[..., 0] + 1.0, rtol=1e-6)
    np.testing.assert_allclose(tr.reward, task.reward_fn(tr.obs, jnp.clip(tr.action, -1, 1),
                                                         tr.next_obs), rtol=1e-6)
    np.testing.assert_array_equal(tr.done, task.done_fn(tr.next_obs))
    assert tr.done.sum() > 0 and stats.ended.sum() == tr.done.sum() + tr.truncation.sum()
    np.testing.assert_allclose(tr.action, 3.0)  # stored unclipped


def test_duplicate_registration_errors_unless_overwrite():
    register_task("dup_task", _fast_task, overwrite=True)
    with pytest.raises(ValueError, match="already registered"):
        register_task("dup_task", _fast_task)
    register_task("dup_task", lambda **kw: _fast_task(threshold=0.5, **kw), overwrite=True)
    with pytest.raises(ValueError, match="already registered"):
        register_task("halfcheetah", _fast_task)
    with pytest.raises(ValueError, match="callable"):
        register_task("not_callable", 3)


def test_custom_task_with_obs_fn():
    env = brax.envs.get_environment("fast")
    task = make_custom_task("fast_obs", env, reward_fn=lambda o, a, o2: o2[..., 0],
                            done_fn=lambda o2: jnp.zeros(o2.shape[:-1]), episode_length=10,
                            obs_fn=lambda ps: jnp.concatenate([ps.x.pos, ps.xd.vel]))
    assert task.obs_size == 6
    state = task.env.step(task.reset(jax.random.key(0)), jnp.ones(1))
    # 'fast' moves all three coordinates: v += 0.02 (a > 0), x += 0.02 v.
    np.testing.assert_allclose(state.obs, [0.0004] * 3 + [0.02] * 3, atol=1e-7)
    np.testing.assert_allclose(state.metrics["native_reward"], 0.0004, atol=1e-7)
    with pytest.raises(ValueError, match="episode_length"):
        make_custom_task("x", env, lambda o, a, o2: o2[..., 0], lambda o2: o2[..., 0], 0)
    with pytest.raises(ValueError, match="env must be a brax.envs.Env"):
        make_custom_task("x", object(), lambda o, a, o2: o2[..., 0], lambda o2: o2[..., 0], 5)
