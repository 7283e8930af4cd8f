"""TRPO on imagined rollouts: one iteration traces once, metrics are finite, options run."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases


def _phases(*overrides):
    cfg = config_lib.apply_overrides(config_lib.load_config("test"), list(overrides))
    static, hp = config_lib.split(cfg)
    return make_phases(static), hp


@pytest.fixture(scope="module")
def setup():
    phases, hp = _phases()
    state = phases.init(jax.random.key(0))
    state, _ = jax.jit(phases.collect)(state, hp)
    state, _ = jax.jit(phases.fit_dynamics)(state, hp)
    state, _ = jax.jit(phases.fit_bc)(state, hp)
    return phases, hp, state


def test_iteration_traces_once_and_is_finite(setup):
    phases, hp, state = setup
    opt = phases.opt

    @jax.jit
    @chex.assert_max_traces(n=1)
    def iteration(learner, dyn, hp, key):
        return opt.iteration(learner, dyn, hp, key)

    learner = state.learner
    for i in range(3):
        learner, m = iteration(learner, state.dynamics, hp, jax.random.key(i))
    # A different hyperparameter value (same shapes/dtypes) must not retrace.
    hp2 = hp.replace(trpo=hp.trpo.replace(target_kl=jnp.float32(0.01), gamma=jnp.float32(0.9)))
    learner, m = iteration(learner, state.dynamics, hp2, jax.random.key(9))
    chex.assert_tree_all_finite(m)
    assert float(m["imagined_rows"]) > 0
    # The policy moved away from the clone but the baseline was fitted (non-zero coefficients).
    assert float(m["kl_to_behavior"]) >= 0.0
    assert np.any(np.asarray(learner.baseline.coeffs) != 0)


def test_improve_scan_matches_repeated_iterations(setup):
    """Compiled with XLA:CPU's fusion emitters (the conftest turns them off): without them, at
    -O0, the scan and the single iteration round differently, and the second iteration's CG
    (10 steps on an ill-conditioned Fisher) turns that into a different step (residual 0.70
    against 0.04 after an unrelated change to the rollout)."""
    phases, hp, state = setup
    opt = phases.opt
    key = jax.random.key(7)
    options = {"xla_cpu_use_fusion_emitters": True}
    args = (state.learner, state.dynamics, hp)
    improve = jax.jit(lambda l, d, h, k: opt.improve(l, d, h, k, 2)).lower(*args, key)
    learner_scan, m_scan = improve.compile(options)(*args, key)
    learner = state.learner
    it = jax.jit(opt.iteration).lower(*args, key).compile(options)
    for k in jax.random.split(key, 2):
        learner, m = it(learner, state.dynamics, hp, k)
    chex.assert_trees_all_close(learner_scan.policy.net, learner.policy.net, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m_scan["imagined_return"][-1], m["imagined_return"], rtol=1e-4)


def test_kl_penalty_changes_the_update(setup):
    phases, hp, state = setup
    it = jax.jit(phases.opt.iteration)
    # Move the policy away from the clone first so that KL(pi || pi_beta) > 0.
    learner, _ = it(state.learner, state.dynamics, hp, jax.random.key(1))
    a, _ = it(learner, state.dynamics, hp, jax.random.key(2))
    penalized = hp.replace(trpo=hp.trpo.replace(kl_penalty=jnp.float32(100.0)))
    b, _ = it(learner, state.dynamics, penalized, jax.random.key(2))
    diff = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a.policy.net, b.policy.net)
    assert max(jax.tree.leaves(diff)) > 0


@pytest.mark.parametrize("overrides", [
    ("trpo.baseline='mlp'",),
    ("imagine.member_sampling='per_rollout'", "imagine.exploration='learned'"),
    ("imagine.start_states='dataset'", "trpo.bootstrap_truncation=True", "trpo.ls_check_kl=True"),
    ("trpo.ratio_std='sampling'",),
    ("trpo.ratio_std='floor'", "trpo.fvp='hessian'"),
])
def test_options_run(overrides):
    phases, hp = _phases(*overrides)
    state = phases.init(jax.random.key(0))
    state, _ = jax.jit(phases.collect)(state, hp)
    state, _ = jax.jit(phases.fit_dynamics)(state, hp)
    state, m = jax.jit(phases.improve, static_argnums=2)(state, hp, 2)
    chex.assert_tree_all_finite(m)


def test_advantage_policy_passes_in_row_chunks_equal_the_whole_batch(setup):
    """The advantages' policy passes run ROW_CHUNK rows at a time: the same numbers as one
    dist_net over the whole [H, B, o] batch (2500 rows: one full chunk and a remainder)."""
    from bremen_jax.algo import policy_opt
    from bremen_jax.models.policy import dist_net

    phases, _, state = setup
    policy = state.learner.policy
    assert 2500 > policy_opt.ROW_CHUNK
    obs = jax.random.normal(jax.random.key(3), (50, 50, phases.task.obs_size))
    got = policy_opt._dist_rows(policy, obs)
    want = dist_net(policy.net, policy.obs_norm, obs)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_start_pools_per_start_states_option(setup):
    """imagine.start_states picks the start pool: none for reset; every valid row for dataset;
    the latest batch's rows for latest and reset_latest (the last mixing in resets at 0.5)."""
    from bremen_jax.data import buffer as buffer_lib

    _, _, state = setup
    # a second batch (the first one's rows again), so "latest" and "all rows" differ
    buf = state.buffer
    first = np.asarray(buffer_lib.valid_mask(buf))
    buf = buffer_lib.insert(buf, jax.tree.map(lambda x: x[first], buf.data))
    state = state.replace(buffer=buf)
    assert int(buffer_lib.latest_segment_mask(buf).sum()) == first.sum() > 0
    assert int(buffer_lib.valid_mask(buf).sum()) == 2 * first.sum()
    pools = {}
    for starts in ("reset", "dataset", "latest", "reset_latest"):
        phases, _ = _phases(f"imagine.start_states='{starts}'")
        pools[starts] = phases._start_pool(state)
        want = 0.5 if starts == "reset_latest" else 0.0
        assert phases.static.imagine.reset_fraction == want
    assert pools["reset"] == (None, None)
    np.testing.assert_array_equal(pools["dataset"][1], buffer_lib.valid_mask(buf))
    for starts in ("latest", "reset_latest"):
        obs, mask = pools[starts]
        assert obs is buf.data.obs
        np.testing.assert_array_equal(mask, buffer_lib.latest_segment_mask(buf))
