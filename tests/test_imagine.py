"""Imagined rollouts: shapes, determinism per key, terminations/resets, masks, member choice."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.algo.imagine import make_imagined_rollout
from bremen_jax.envs import make_task
from bremen_jax.models.dynamics import DynamicsConfig, make_dynamics
from bremen_jax.models.policy import PolicyConfig, make_policy

H, B = 12, 6


@pytest.fixture(scope="module")
def parts():
    task = make_task("inverted_pendulum", backend="positional", episode_length=100)
    dyn = make_dynamics(task.obs_size, task.action_size,
                        DynamicsConfig(num_members=3, hidden_sizes=(16, 16), batch_size=10))
    pol = make_policy(PolicyConfig(obs_dim=task.obs_size, act_dim=task.action_size,
                                   hidden_sizes=(8, 8)))
    dyn_state = dyn.init(jax.random.key(0))
    pol_params = pol.init(jax.random.key(1))
    return task, dyn, pol, dyn_state, pol_params


def _rollout(parts, **kw):
    task, dyn, pol, dyn_state, pol_params = parts
    fn = make_imagined_rollout(task, dyn, pol, horizon=H, num_rollouts=B, **kw)
    return jax.jit(fn), dyn_state, pol_params


def test_shapes_and_determinism(parts):
    roll, dyn_state, pol_params = _rollout(parts)
    sigma, n_act = jnp.float32(0.1), jnp.int32(3)
    a = roll(dyn_state, pol_params, sigma, n_act, jax.random.key(3))
    b = roll(dyn_state, pol_params, sigma, n_act, jax.random.key(3))
    c = roll(dyn_state, pol_params, sigma, n_act, jax.random.key(4))
    chex.assert_shape(a.obs, (H, B, 4))
    chex.assert_shape(a.action, (H, B, 1))
    chex.assert_shape([a.reward, a.terminated, a.path_end, a.mask], (H, B))
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a.obs, c.obs)
    chex.assert_tree_all_finite(a)


def _sharp_dynamics(parts):
    """A model that tips the pole: predicted angle grows by 0.05 per step from any state."""
    task, dyn, pol, dyn_state, pol_params = parts
    norm = dyn_state.norm.replace(delta_mean=jnp.array([0.0, 0.05, 0.0, 0.0]),
                                  delta_std=jnp.ones(4) * 1e-6)
    return dyn_state.replace(norm=norm)


def test_terminations_end_paths_and_reset(parts):
    task, dyn, pol, _, pol_params = parts
    roll, _, _ = _rollout(parts)
    dyn_state = _sharp_dynamics(parts)
    out = roll(dyn_state, pol_params, jnp.float32(0.1), jnp.int32(3), jax.random.key(0))
    obs, nxt = np.asarray(out.obs), np.asarray(out.next_obs)
    term = np.asarray(out.terminated)
    t = np.asarray(out.t)
    # The angle grows ~0.05 per step from |angle| <= 0.01 at reset: termination (|angle|>0.2) after
    # 4-5 steps; done_fn is evaluated on next_obs.
    assert term.sum() > 0
    np.testing.assert_array_equal(term, (np.abs(nxt[..., 1]) > 0.2).astype(np.float32))
    for h in range(H - 1):
        ended = term[h] > 0
        # After a termination the next row starts a new path at t = 0 from a reset state.
        assert np.all(t[h + 1][ended] == 0)
        assert np.all(np.abs(obs[h + 1][ended][:, 1]) <= 0.011)
        assert np.all(t[h + 1][~ended] == t[h][~ended] + 1)
    # Rows after the last path end of a column (a path in progress) are masked out.
    mask = np.asarray(out.mask)
    end = np.asarray(out.path_end)
    for col in range(B):
        last = np.nonzero(end[:, col])[0].max()
        assert mask[: last + 1, col].all() and not mask[last + 1:, col].any()


def test_keep_partial_paths(parts):
    roll, _, pol_params = _rollout(parts, keep_partial_paths=True)
    out = roll(_sharp_dynamics(parts), pol_params, jnp.float32(0.1), jnp.int32(3),
               jax.random.key(0))
    assert np.all(np.asarray(out.mask) == 1)
    assert np.all(np.asarray(out.path_end)[-1] == 1)


def test_no_termination_gives_one_full_path_per_rollout(parts):
    task, dyn, pol, dyn_state, pol_params = parts
    roll, _, _ = _rollout(parts)
    # Zero predicted change: the pole never tips, every column is one path of H steps.
    norm = dyn_state.norm.replace(delta_mean=jnp.zeros(4), delta_std=jnp.ones(4) * 1e-12)
    out = roll(dyn_state.replace(norm=norm), pol_params, jnp.float32(0.1), jnp.int32(3),
               jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(out.t), np.repeat(np.arange(H)[:, None], B, 1))
    assert np.asarray(out.path_end)[-1].all() and np.asarray(out.path_end)[:-1].sum() == 0
    assert np.asarray(out.mask).all()
    np.testing.assert_allclose(np.asarray(out.reward), 1.0)


@pytest.mark.parametrize("cap, keep", [(5, False), (5, True), (4, False), (30, False)])
def test_path_cap_ends_paths_inside_the_same_scan(parts, cap, keep):
    """imagine.warmup_horizon: with no termination, paths of min(cap, H) steps; H = 12, cap 5:
    t = 0..4, 0..4, 0..1 in every column, ends at rows 4 and 9; the last two rows (a path the
    scan cut) are masked out unless kept (then the scan's end ends it). cap 4 divides H: three
    whole paths. A cap above H is H: one path."""
    task, dyn, pol, dyn_state, pol_params = parts
    roll, _, _ = _rollout(parts, keep_partial_paths=keep)
    norm = dyn_state.norm.replace(delta_mean=jnp.zeros(4), delta_std=jnp.ones(4) * 1e-12)
    out = roll(dyn_state.replace(norm=norm), pol_params, jnp.float32(0.1), jnp.int32(3),
               jax.random.key(0), path_cap=jnp.int32(cap))
    c = min(cap, H)
    t_col = np.arange(H) % c
    np.testing.assert_array_equal(np.asarray(out.t), np.repeat(t_col[:, None], B, 1))
    ends = (t_col == c - 1).astype(np.float32)
    whole = (np.arange(H) < H // c * c).astype(np.float32)
    if keep:
        ends[-1] = 1.0
    np.testing.assert_array_equal(np.asarray(out.path_end), np.repeat(ends[:, None], B, 1))
    mask = np.ones(H) if keep else whole
    np.testing.assert_array_equal(np.asarray(out.mask), np.repeat(mask[:, None], B, 1))
    # A new path starts from a reset state (|angle| <= 0.01), not from the last prediction.
    assert np.all(np.abs(np.asarray(out.obs)[t_col == 0][..., 1]) <= 0.011)


def test_path_cap_zero_is_the_full_horizon(parts):
    roll, dyn_state, pol_params = _rollout(parts)
    args = (dyn_state, pol_params, jnp.float32(0.1), jnp.int32(3), jax.random.key(5))
    chex.assert_trees_all_equal(roll(*args), roll(*args, path_cap=jnp.int32(0)))


@pytest.mark.parametrize("member_sampling", ["per_step", "per_rollout"])
def test_single_active_member_uses_member_zero(parts, member_sampling):
    task, dyn, pol, dyn_state, pol_params = parts
    roll, _, _ = _rollout(parts, member_sampling=member_sampling)
    out = roll(dyn_state, pol_params, jnp.float32(0.1), jnp.int32(1), jax.random.key(5))
    a_clip = jnp.clip(out.action, -1.0, 1.0)
    expect = dyn.predict(dyn_state, out.obs, a_clip, jnp.int32(0))
    np.testing.assert_allclose(np.asarray(out.next_obs), np.asarray(expect), rtol=1e-5, atol=1e-5)


def test_bad_arguments(parts):
    task, dyn, pol, _, _ = parts
    with pytest.raises(ValueError, match="member_sampling"):
        make_imagined_rollout(task, dyn, pol, horizon=H, num_rollouts=B, member_sampling="x")
    with pytest.raises(ValueError, match="exploration"):
        make_imagined_rollout(task, dyn, pol, horizon=H, num_rollouts=B, exploration="x")
    with pytest.raises(ValueError, match="horizon"):
        make_imagined_rollout(task, dyn, pol, horizon=0, num_rollouts=B)


def test_member_disagreement_by_hand():
    from bremen_jax.algo.imagine import member_disagreement

    # 3 members, one row, 2 dims; delta std (2, 0.5). In units: member z = x / std.
    x = jnp.array([[[2.0, 0.5]], [[4.0, 1.0]], [[100.0, -7.0]]])      # [E=3, 1, 2]
    std = jnp.array([2.0, 0.5])
    # Active members 0, 1: z = (1, 1), (2, 2): per-dim population std 0.5, 0.5 -> sqrt(0.5).
    np.testing.assert_allclose(member_disagreement(x, std, jnp.int32(2)), [np.sqrt(0.5)],
                               rtol=1e-6)
    # All three: dim 0 z = 1, 2, 50 -> var = mean(z^2) - mean^2 = 2505/3 - (53/3)^2.
    z0, z1 = np.array([1.0, 2.0, 50.0]), np.array([1.0, 2.0, -14.0])
    want = np.sqrt(z0.var() + z1.var())
    np.testing.assert_allclose(member_disagreement(x, std, jnp.int32(3)), [want], rtol=1e-5)
    assert float(member_disagreement(x, std, jnp.int32(1))[0]) == 0.0  # one member: no spread


def test_disagreement_penalty_subtracts_lambda_times_the_spread(parts):
    """imagine.penalty='disagreement': same paths (the drawn member's predictions), reward
    minus lambda x the members' disagreement; lambda 0 or one active member = no penalty."""
    sigma, key = jnp.float32(0.1), jax.random.key(5)
    plain, dyn_state, pol_params = _rollout(parts)
    pen, _, _ = _rollout(parts, penalty="disagreement")
    a = plain(dyn_state, pol_params, sigma, jnp.int32(3), key)
    assert a.disagreement is None
    b0 = pen(dyn_state, pol_params, sigma, jnp.int32(3), key, None, None, jnp.float32(0.0))
    b2 = pen(dyn_state, pol_params, sigma, jnp.int32(3), key, None, None, jnp.float32(2.0))
    for b in (b0, b2):
        np.testing.assert_allclose(b.obs, a.obs, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(b.mask, a.mask)
    np.testing.assert_allclose(b0.reward, a.reward, rtol=1e-6)
    u = np.asarray(b2.disagreement)
    assert u.shape == (H, B) and (u > 0).all()  # random members disagree everywhere
    np.testing.assert_allclose(b2.reward, np.asarray(a.reward) - 2.0 * u, rtol=1e-5, atol=1e-6)
    one = pen(dyn_state, pol_params, sigma, jnp.int32(1), key, None, None, jnp.float32(2.0))
    np.testing.assert_array_equal(one.disagreement, 0.0)
    with pytest.raises(ValueError, match="penalty must be 'none' or 'disagreement'"):
        _rollout(parts, penalty="mopo")


def test_dataset_start_sampler_is_uniform_over_valid_rows_without_an_n_by_p_draw():
    """start_sampler with a pool: only rows with the mask set, each with probability 1/3 here
    (rows 1, 3, 4 of 6), and no [n, P] intermediate (one rank per sample, binary search)."""
    from bremen_jax.algo.imagine import start_sampler

    pool = jnp.arange(6.0)[:, None] * jnp.ones((1, 2))             # row i holds [i, i]
    mask = jnp.array([False, True, False, True, True, False])
    sample = start_sampler(lambda k: jnp.zeros(2), pool, mask)
    n = 30_000
    rows = np.asarray(jax.jit(sample, static_argnums=1)(jax.random.key(0), n))[:, 0]
    assert set(np.unique(rows)) == {1.0, 3.0, 4.0}
    freq = np.array([np.mean(rows == r) for r in (1.0, 3.0, 4.0)])
    np.testing.assert_allclose(freq, 1 / 3, atol=0.015)             # ~5 binomial std
    big = jnp.zeros((4096, 3))
    jaxpr = jax.make_jaxpr(lambda k: start_sampler(None, big, jnp.ones(4096, bool))(k, 100))(
        jax.random.key(0))
    sizes = [np.prod(v.aval.shape) for e in jaxpr.eqns for v in e.outvars
             if hasattr(v.aval, "shape")]
    assert max(sizes) < 100 * 4096, max(sizes)
    # reset_fraction 0.5 (start_states='reset_latest'): each row a reset state (here -1) with
    # probability 1/2, else a valid pool row (1/6 each)
    mixed = start_sampler(lambda k: jnp.full(2, -1.0), pool, mask, 0.5)
    rows = np.asarray(jax.jit(mixed, static_argnums=1)(jax.random.key(2), n))[:, 0]
    assert set(np.unique(rows)) == {-1.0, 1.0, 3.0, 4.0}
    freq = np.array([np.mean(rows == r) for r in (-1.0, 1.0, 3.0, 4.0)])
    np.testing.assert_allclose(freq, [1 / 2, 1 / 6, 1 / 6, 1 / 6], atol=0.015)
    with pytest.raises(ValueError, match="reset_fraction must be in"):
        start_sampler(None, pool, mask, 1.0)
    # no pool: the task's reset distribution, one key per start
    resets = start_sampler(lambda k: jax.random.normal(k, (2,)))(jax.random.key(1), 3)
    assert resets.shape == (3, 2) and len(np.unique(np.asarray(resets[:, 0]))) == 3
