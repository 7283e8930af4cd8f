"""Tests for bremen_jax.algo.bc (behaviour cloning)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.algo import bc as bc_lib
from bremen_jax.models import policy as pol
from bremen_jax.models.networks import mlp_layers
from bremen_jax.types import Transition

OBS, ACT, CAP = 4, 2, 512
W = np.array([[0.8, -0.5], [0.3, 0.9], [-0.7, 0.2], [0.4, 0.6]], np.float32)
OFFSET = np.array([3.0, -2.0, 1.0, 0.5], np.float32)
SCALE = np.array([2.0, 0.5, 1.0, 3.0], np.float32)


def behaviour(obs):
    return np.tanh(((obs - OFFSET) / SCALE) @ W)


def make_data(seed, valid):
    rng = np.random.RandomState(seed)
    obs = (rng.randn(CAP, OBS) * SCALE + OFFSET).astype(np.float32)
    act = behaviour(obs).astype(np.float32)
    mask = np.zeros(CAP, bool)
    mask[rng.permutation(CAP)[:valid]] = True
    act[~mask] = 5.0  # garbage outside the mask: must be ignored
    z = np.zeros(CAP, np.float32)
    data = Transition(obs=jnp.asarray(obs), action=jnp.asarray(act), reward=jnp.asarray(z),
                      next_obs=jnp.asarray(obs), done=jnp.asarray(z),
                      truncation=jnp.asarray(z))
    return data, jnp.asarray(mask)


@pytest.fixture(scope="module")
def setup():
    policy = pol.make_policy(pol.PolicyConfig(OBS, ACT, hidden_sizes=(64, 64)))
    bc = bc_lib.make_bc(policy, bc_lib.BCConfig(batch_size=64, num_steps=1500))
    fit = jax.jit(chex.assert_max_traces(bc.fit, n=1))
    return policy, bc, fit


def test_bc_recovers_behaviour_policy_and_compiles_once(setup):
    policy, bc, fit = setup
    hp = bc_lib.BCHParams.create(2e-3)
    state = bc.init(jax.random.key(0))
    data1, mask1 = make_data(0, 400)
    state, m = fit(state, data1, mask1, hp, jax.random.key(1))
    chex.assert_tree_all_finite((state, m))
    assert float(m["loss"]) < 0.01 * float(m["loss_initial"])
    chex.assert_shape(m["loss_curve"], (20,))
    assert float(m["loss_curve"][-1]) < float(m["loss_curve"][0])
    assert float(m["num_samples"]) == 400.0
    assert float(m["std_mean"]) < 0.02  # sigma driven towards its floor

    # Second fit on new data, different lr: no retrace (assert_max_traces).
    data2, mask2 = make_data(1, 300)
    state, m2 = fit(state, data2, mask2, bc_lib.BCHParams.create(1e-3),
                    jax.random.key(2))
    assert float(m2["loss"]) < 0.1 * float(m2["loss_initial"])
    assert int(state.step) == 3000
    assert int(state.opt_state.count) == 3000  # Adam state kept (original quirk)

    # Held-out states: the cloned mean tracks the behaviour policy.
    rng = np.random.RandomState(9)
    test_obs = (rng.randn(1000, OBS) * SCALE + OFFSET).astype(np.float32)
    pred = policy.act_deterministic(state.params, jnp.asarray(test_obs))
    mse = float(np.mean((np.asarray(pred) - behaviour(test_obs)) ** 2))
    assert mse < 2e-3, mse

    # Cumulative normaliser over both masked batches.
    seen = np.concatenate([np.asarray(data1.obs)[np.asarray(mask1)],
                           np.asarray(data2.obs)[np.asarray(mask2)]])
    assert float(state.params.obs_norm.count) == 700.0
    np.testing.assert_allclose(state.params.obs_norm.mean, seen.mean(0), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(state.params.obs_norm.var, seen.var(0), rtol=1e-3)


def test_empty_mask_leaves_state_unchanged(setup):
    _, bc, fit = setup
    state = bc.init(jax.random.key(0))
    data, mask = make_data(0, 10)
    state, _ = fit(state, data, mask, bc_lib.BCHParams.create(), jax.random.key(1))
    same, m = fit(state, data, jnp.zeros(CAP, bool), bc_lib.BCHParams.create(),
                  jax.random.key(3))
    chex.assert_trees_all_equal(same, state)
    assert float(m["num_samples"]) == 0.0
    assert float(m["loss"]) == 0.0


def test_reinit_and_reset_options():
    policy = pol.make_policy(pol.PolicyConfig(OBS, ACT, hidden_sizes=(8,)))
    data, mask = make_data(0, 200)
    hp = bc_lib.BCHParams.create(1e-2)
    cfg = bc_lib.BCConfig(batch_size=16, num_steps=5, reinit=True, reset_optimizer=True)
    bc = bc_lib.make_bc(policy, cfg)
    s0 = bc.init(jax.random.key(0))
    s1, _ = bc.fit(s0, data, mask, hp, jax.random.key(1))
    # With reinit + reset, refitting from s1 with an empty-stat normaliser equals
    # fitting from scratch: the net and optimizer start from the same values.
    s1b = s1.replace(params=s1.params.replace(obs_norm=s0.params.obs_norm))
    s2, _ = bc.fit(s1b, data, mask, hp, jax.random.key(1))
    chex.assert_trees_all_close(s2.params, s1.params, atol=1e-6)
    assert int(s2.opt_state.count) == 5

    # Without reinit the second fit continues from the trained weights.
    bc_cont = bc_lib.make_bc(policy, bc_lib.BCConfig(batch_size=16, num_steps=5,
                                                     reinit=False))
    s2c, _ = bc_cont.fit(s1b, data, mask, hp, jax.random.key(1))
    assert not np.allclose(mlp_layers(s2c.params.net)[0]["kernel"],
                           mlp_layers(s1.params.net)[0]["kernel"])
    assert int(s2c.opt_state.count) == 10


def test_bc_loss_hand_value():
    # Zero net -> mean 0, log_std -2.5; loss = mean((0 + e^-2.5 eps - a)^2).
    net = {"params": {"output": {"kernel": jnp.zeros((1, 2)), "bias": jnp.zeros(2)}}}
    key = jax.random.key(0)
    action = jnp.array([[0.5]])
    loss, (mse, std) = bc_lib.bc_loss(net, jnp.ones((1, 1)), action, key)
    eps = jax.random.normal(key, (1, 1))
    np.testing.assert_allclose(loss, (np.exp(-2.5) * eps[0, 0] - 0.5) ** 2, rtol=1e-5)
    np.testing.assert_allclose(mse, 0.25, rtol=1e-6)
    np.testing.assert_allclose(std, np.exp(-2.5), rtol=1e-6)


def test_bad_inputs(setup):
    _, bc, _ = setup
    state = bc.init(jax.random.key(0))
    data, mask = make_data(0, 10)
    hp = bc_lib.BCHParams.create()
    with pytest.raises(ValueError, match="mask"):
        bc.fit(state, data, mask[:-1], hp, jax.random.key(0))
    with pytest.raises(ValueError, match="data.action"):
        bc.fit(state, data.replace(action=data.action[:, :1]), mask, hp,
               jax.random.key(0))
    with pytest.raises(ValueError, match="data.obs"):
        bc.fit(state, data.replace(obs=data.obs[:, :2]), mask, hp, jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        bc_lib.BCConfig(batch_size=0)
    with pytest.raises(ValueError, match="num_steps"):
        bc_lib.BCConfig(num_steps=2.5)
