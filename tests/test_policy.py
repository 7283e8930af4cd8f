"""Tests for bremen_jax.models.policy (normaliser, normc init, head, action modes)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.models import policy as pol
from bremen_jax.models.networks import mlp_layers

OBS, ACT = 5, 3


@pytest.fixture(scope="module")
def policy():
    return pol.make_policy(pol.PolicyConfig(obs_dim=OBS, act_dim=ACT, hidden_sizes=(16, 8)))


# ----------------------------------------------------------------------------- normaliser


def test_init_normalizer_is_exact_identity():
    norm = pol.init_normalizer(OBS)
    x = jnp.arange(2 * OBS, dtype=jnp.float32).reshape(2, OBS) - 3.0
    np.testing.assert_array_equal(pol.normalize(norm, x), x)
    np.testing.assert_array_equal(norm.std, np.ones(OBS))


def test_normalizer_matches_numpy_over_two_masked_batches():
    rng = np.random.RandomState(0)
    x1 = rng.randn(40, OBS).astype(np.float32) * 3.0 + 5.0
    x2 = rng.randn(30, OBS).astype(np.float32) * 0.5 - 1.0
    x2[:, 0] = 7.0  # constant dim -> var floor
    m1 = rng.rand(40) < 0.6
    m2 = rng.rand(30) < 0.5
    norm = pol.init_normalizer(OBS)
    norm = pol.update_normalizer(norm, jnp.asarray(x1), jnp.asarray(m1))
    norm = jax.jit(pol.update_normalizer)(norm, jnp.asarray(x2), jnp.asarray(m2))

    ref = np.concatenate([x1[m1], x2[m2]]).astype(np.float64)
    # Original RunningStats: sum / square_sum accumulation.
    mean = ref.sum(0) / len(ref)
    var = ref.__pow__(2).sum(0) / len(ref) - mean ** 2
    std = np.sqrt(np.maximum(var, 1e-2) + 1e-6)
    assert float(norm.count) == m1.sum() + m2.sum()
    np.testing.assert_allclose(norm.mean, mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.var, var, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.std, std, rtol=1e-5)
    assert float(norm.std[1:].min()) > 0.1
    # dim 0 of the merged data is not constant, but check the floor on a 1-row normaliser
    one = pol.update_normalizer(pol.init_normalizer(OBS), jnp.asarray(x1[:1]))
    np.testing.assert_allclose(one.std, np.sqrt(1e-2 + 1e-6), rtol=1e-6)
    x = jnp.asarray(x2[:3])
    np.testing.assert_allclose(pol.normalize(norm, x), (x2[:3] - mean) / std,
                               rtol=1e-4, atol=1e-4)


def test_normalizer_empty_mask_is_noop_and_bad_shapes():
    norm = pol.update_normalizer(pol.init_normalizer(OBS), jnp.ones((4, OBS)))
    same = pol.update_normalizer(norm, jnp.full((6, OBS), 100.0), jnp.zeros(6, bool))
    chex.assert_trees_all_equal(norm, same)
    with pytest.raises(ValueError, match="obs"):
        pol.update_normalizer(norm, jnp.ones((4, OBS + 1)))
    with pytest.raises(ValueError, match="mask"):
        pol.update_normalizer(norm, jnp.ones((4, OBS)), jnp.ones(3, bool))


# ----------------------------------------------------------------------------- init/head


def test_normc_init_column_norms_and_fixed_seed(policy):
    p1 = policy.init(jax.random.key(0))
    p2 = policy.init(jax.random.key(1))
    chex.assert_trees_all_equal(p1, p2)  # fixed seed 1234: key ignored
    sizes = policy.layer_sizes
    assert sizes == (OBS, 16, 8, 2 * ACT)
    layers = mlp_layers(p1.net)
    assert len(layers) == len(sizes) - 1
    for i, layer in enumerate(layers):
        chex.assert_shape(layer["kernel"], (sizes[i], sizes[i + 1]))
        np.testing.assert_array_equal(layer["bias"], 0.0)
        target = 0.01 if i == len(layers) - 1 else 1.0
        np.testing.assert_allclose(np.linalg.norm(layer["kernel"], axis=0), target,
                                   rtol=1e-5)
    # Exactly the original's numpy draw: fresh RandomState(1234) per layer.
    w = np.random.RandomState(1234).randn(OBS, 16).astype(np.float32)
    w *= 1.0 / np.sqrt(np.square(w).sum(axis=0, keepdims=True))
    np.testing.assert_array_equal(layers[0]["kernel"], w)


def test_init_without_seed_uses_key():
    p = pol.make_policy(pol.PolicyConfig(OBS, ACT, (16,), init_seed=None))
    a, b = p.init(jax.random.key(0)), p.init(jax.random.key(1))
    assert not np.allclose(mlp_layers(a.net)[0]["kernel"], mlp_layers(b.net)[0]["kernel"])
    np.testing.assert_allclose(np.linalg.norm(mlp_layers(a.net)[1]["kernel"], axis=0), 0.01,
                               rtol=1e-5)
    # vmap over keys gives a stacked (ensemble-like) init
    stacked = jax.vmap(p.init)(jax.random.split(jax.random.key(2), 3))
    chex.assert_shape(mlp_layers(stacked.net)[0]["kernel"], (3, OBS, 16))


def test_head_hand_values():
    out = jnp.array([0.0, 100.0, 0.0, -100.0])  # act_dim 2: mu = [0, 100], h_s = [0, -100]
    mean, log_std = pol.head(out)
    np.testing.assert_allclose(mean, [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(log_std, [-2.5, -5.0], atol=1e-6)
    _, log_std = pol.head(jnp.array([0.0, 100.0]))
    np.testing.assert_allclose(log_std, [0.0], atol=1e-6)


def test_dist_ranges_shapes_and_jit(policy):
    params = policy.init(jax.random.key(0))
    # Blow up the weights so the head saturates.
    params = params.replace(net=jax.tree.map(lambda x: 50.0 * x + 1.0, params.net))
    obs = 10.0 * jax.random.normal(jax.random.key(1), (7, 4, OBS))
    mean, log_std = policy.dist(params, obs)
    chex.assert_shape([mean, log_std], (7, 4, ACT))
    assert float(mean.min()) >= -1.0 and float(mean.max()) <= 1.0
    assert float(log_std.min()) >= -5.0 and float(log_std.max()) <= 0.0
    assert float(jnp.abs(mean).max()) > 0.99  # saturation actually reached
    m_jit, s_jit = jax.jit(policy.dist)(params, obs)
    np.testing.assert_allclose(m_jit, mean, atol=1e-6)
    np.testing.assert_allclose(s_jit, log_std, atol=1e-6)
    # dist_net on the raw parts is the same function (TRPO differentiates net only)
    m2, _ = pol.dist_net(params.net, params.obs_norm, obs)
    np.testing.assert_array_equal(m2, mean)
    with pytest.raises(ValueError, match="obs"):
        policy.dist(params, jnp.ones((3, OBS + 1)))


def test_initial_policy_is_near_zero_mean(policy):
    params = policy.init(jax.random.key(0))
    mean, log_std = policy.dist(params, jnp.ones((2, OBS)))
    assert float(jnp.abs(mean).max()) < 0.2  # output layer column norm 0.01
    np.testing.assert_allclose(log_std, -2.5, atol=0.2)


# ----------------------------------------------------------------------------- actions


def test_action_modes_statistics(policy):
    params = policy.init(jax.random.key(0))
    params = params.replace(net=jax.tree.map(lambda x: 20.0 * x, params.net))
    obs = jnp.tile(jnp.linspace(-1.0, 1.0, OBS)[None], (20000, 1))
    mean, log_std = policy.dist(params, obs[:1])
    det = pol.make_policy_fn(policy, "deterministic")(params, obs[0], jax.random.key(3))
    np.testing.assert_allclose(det, mean[0], atol=1e-6)

    explore = jax.jit(pol.make_policy_fn(policy, "explore", sigma=0.3))
    a = explore(params, obs, jax.random.key(4))
    chex.assert_shape(a, (20000, ACT))
    np.testing.assert_allclose(a.mean(0), mean[0], atol=0.02)
    np.testing.assert_allclose(a.std(0), 0.3, rtol=0.03)

    a = pol.make_policy_fn(policy, "sample", sigma=2.0)(params, obs, jax.random.key(5))
    np.testing.assert_allclose(a.std(0), 2.0 * np.exp(log_std[0]), rtol=0.03)
    a = policy.act_sample(params, obs, jax.random.key(5))  # scale 1 default
    np.testing.assert_allclose(a.std(0), np.exp(log_std[0]), rtol=0.03)
    # traced sigma works and different keys differ
    b = jax.jit(policy.act_explore)(params, obs[:2], jax.random.key(6), jnp.float32(0.1))
    c = jax.jit(policy.act_explore)(params, obs[:2], jax.random.key(7), jnp.float32(0.1))
    assert not np.allclose(b, c)


def test_bad_config_and_mode(policy):
    with pytest.raises(ValueError, match="mode"):
        pol.make_policy_fn(policy, "greedy")
    with pytest.raises(ValueError, match="obs_dim"):
        pol.PolicyConfig(obs_dim=0, act_dim=2)
    with pytest.raises(ValueError, match="act_dim"):
        pol.PolicyConfig(obs_dim=2, act_dim=-1)
    with pytest.raises(ValueError, match="hidden_sizes"):
        pol.PolicyConfig(obs_dim=2, act_dim=1, hidden_sizes=(4, 0))
    with pytest.raises(ValueError, match="init_seed"):
        pol.PolicyConfig(obs_dim=2, act_dim=1, init_seed=-3)
    cfg = pol.PolicyConfig(obs_dim=2, act_dim=1, hidden_sizes=[4, 4])
    assert cfg.hidden_sizes == (4, 4)
    hash(cfg)
