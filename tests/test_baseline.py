"""Tests for bremen_jax.algo.baseline (linear feature baseline, MLP value function)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.algo import baseline as bl
from bremen_jax.models.networks import mlp_layers

OBS = 3


def test_linear_features_hand_values():
    obs_hat = jnp.array([[1.0, -2.0, 20.0], [0.5, 0.0, -30.0]])
    t = jnp.array([0, 250])
    phi = bl.linear_features(obs_hat, t)
    expected = np.array([
        [1.0, -2.0, 10.0, 1.0, 4.0, 100.0, 0.0, 0.0, 0.0, 1.0],
        [0.5, 0.0, -10.0, 0.25, 0.0, 100.0, 2.5, 6.25, 15.625, 1.0],
    ])
    np.testing.assert_allclose(phi, expected, rtol=1e-6)
    assert bl.num_linear_features(OBS) == phi.shape[-1] == 2 * OBS + 4
    chex.assert_shape(bl.linear_features(jnp.zeros((4, 5, OBS)), jnp.zeros((4, 5))),
                      (4, 5, 2 * OBS + 4))
    with pytest.raises(ValueError, match="t"):
        bl.linear_features(obs_hat, jnp.zeros(3))


def _random_problem(seed, n=600, horizon=250):
    rng = np.random.RandomState(seed)
    obs_hat = rng.randn(n, OBS).astype(np.float32)
    t = rng.randint(0, horizon, n)
    phi = np.asarray(bl.linear_features(jnp.asarray(obs_hat), jnp.asarray(t)))
    true_c = rng.randn(phi.shape[1])
    y = (phi @ true_c + 0.1 * rng.randn(n)).astype(np.float32)
    mask = rng.rand(n) < 0.7
    return phi, y, mask


@pytest.mark.parametrize("horizon", [250, 1000])
def test_ridge_matches_numpy(horizon):
    phi, y, mask = _random_problem(0, horizon=horizon)
    y_bad = y.copy()
    y_bad[~mask] = 1e4  # masked-out rows must not matter
    fitted = jax.jit(bl.fit_linear_baseline)(jnp.asarray(phi), jnp.asarray(y_bad),
                                             jnp.asarray(mask), 1e-5)
    p64, y64 = phi[mask].astype(np.float64), y[mask].astype(np.float64)
    ref = np.linalg.solve(p64.T @ p64 + 1e-5 * np.eye(phi.shape[1]), p64.T @ y64)
    np.testing.assert_allclose(bl.predict_linear(fitted, jnp.asarray(phi)), phi @ ref,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fitted.coeffs, ref, rtol=1e-4, atol=1e-4)


def test_nan_retry_picks_first_finite_candidate(monkeypatch):
    phi, y, mask = _random_problem(1, n=50)
    f = phi.shape[1]
    seen = {}

    def fake_candidates(features, targets, mask, reg, num_tries=5):
        seen["reg"] = reg
        rows = jnp.arange(num_tries * f, dtype=jnp.float32).reshape(num_tries, f)
        return rows.at[0, 3].set(jnp.nan).at[1, 0].set(jnp.inf)

    monkeypatch.setattr(bl, "ridge_candidates", fake_candidates)
    out = bl.fit_linear_baseline(jnp.asarray(phi), jnp.asarray(y), jnp.asarray(mask),
                                 reg=1e-5)
    chex.assert_tree_all_finite(out)
    np.testing.assert_array_equal(out.coeffs, np.arange(2 * f, 3 * f))
    assert seen["reg"] == 1e-5


def test_ridge_candidates_escalate_reg():
    # Candidate k is the ridge solution with reg * 10**k.
    phi, y, mask = _random_problem(3, n=80)
    cands = bl.ridge_candidates(jnp.asarray(phi), jnp.asarray(y), jnp.asarray(mask), 1e-2)
    chex.assert_shape(cands, (5, phi.shape[1]))
    p64, y64 = phi[mask].astype(np.float64), y[mask].astype(np.float64)
    for k in range(5):
        reg = 1e-2 * 10.0 ** k
        ref = np.linalg.solve(p64.T @ p64 + reg * np.eye(phi.shape[1]), p64.T @ y64)
        np.testing.assert_allclose(cands[k], ref, rtol=1e-3, atol=1e-3)
    # Duplicate columns (exactly singular Gram): still finite, fits the targets.
    x = np.random.RandomState(1).randn(8).astype(np.float32)
    dup = np.stack([x, x, np.ones(8, np.float32)], axis=1)
    fitted = bl.fit_linear_baseline(jnp.asarray(dup), jnp.asarray(2 * x + 1),
                                    jnp.ones(8, bool), 1e-9)
    chex.assert_tree_all_finite(fitted)
    np.testing.assert_allclose(bl.predict_linear(fitted, jnp.asarray(dup)), 2 * x + 1,
                               atol=1e-4)


def test_all_tries_fail_keeps_previous():
    phi, y, mask = _random_problem(2)
    y[0] = np.nan
    mask[0] = True
    prev = bl.LinearBaseline(coeffs=jnp.arange(phi.shape[1], dtype=jnp.float32))
    out = bl.fit_linear_baseline(jnp.asarray(phi), jnp.asarray(y), jnp.asarray(mask),
                                 prev=prev)
    np.testing.assert_array_equal(out.coeffs, prev.coeffs)
    out = bl.fit_linear_baseline(jnp.asarray(phi), jnp.asarray(y), jnp.asarray(mask))
    np.testing.assert_array_equal(out.coeffs, 0.0)


def test_first_finite_hand_values():
    c = jnp.array([[np.nan, 1.0], [np.inf, 2.0], [3.0, 4.0], [5.0, 6.0]])
    np.testing.assert_array_equal(bl.first_finite(c, jnp.zeros(2)), [3.0, 4.0])
    np.testing.assert_array_equal(bl.first_finite(c[:2], jnp.array([7.0, 8.0])),
                                  [7.0, 8.0])


def test_linear_init_and_bad_shapes():
    b = bl.init_linear_baseline(OBS)
    np.testing.assert_array_equal(b.coeffs, np.zeros(2 * OBS + 4))
    np.testing.assert_array_equal(bl.predict_linear(b, jnp.ones((5, 2 * OBS + 4))), 0.0)
    with pytest.raises(ValueError, match="targets and mask"):
        bl.fit_linear_baseline(jnp.ones((5, 10)), jnp.ones(4), jnp.ones(5, bool))
    with pytest.raises(ValueError, match="prev.coeffs"):
        bl.fit_linear_baseline(jnp.ones((5, 10)), jnp.ones(5), jnp.ones(5, bool),
                               prev=bl.LinearBaseline(jnp.zeros(3)))
    with pytest.raises(ValueError, match="features"):
        bl.predict_linear(b, jnp.ones((2, 3)))


# ----------------------------------------------------------------------------- MLP value


def _value_data(n=256):
    rng = np.random.RandomState(0)
    obs = rng.randn(n, OBS).astype(np.float32)
    y = (np.sin(obs[:, 0]) + 0.5 * obs[:, 1] * obs[:, 2]).astype(np.float32)
    mask = rng.rand(n) < 0.8
    y[~mask] = 1e3  # ignored
    return jnp.asarray(obs), jnp.asarray(y), jnp.asarray(mask)


@pytest.mark.parametrize("batch_size", [None, 32])
def test_mlp_value_fit_reduces_error(batch_size):
    chex.clear_trace_counter()  # parametrised: a new ValueFunction may reuse an id
    cfg = bl.ValueConfig(OBS, hidden_sizes=(32, 32), num_steps=300, batch_size=batch_size)
    vf = bl.make_value(cfg)
    state = vf.init(jax.random.key(0))
    obs, y, mask = _value_data()
    fit = jax.jit(chex.assert_max_traces(vf.fit, n=1))
    hp = bl.ValueHParams.create(3e-3)
    new, m = fit(state, obs, y, mask, hp, jax.random.key(1))
    assert float(m["loss"]) < 0.3 * float(m["loss_initial"]), m
    pred = vf.predict(new, obs)
    chex.assert_shape(pred, (256,))
    err = float(jnp.mean(jnp.square(pred - y)[mask]))
    np.testing.assert_allclose(err, m["loss"], rtol=1e-4)
    assert int(new.step) == 300
    new2, m2 = fit(new, obs, y, mask, bl.ValueHParams.create(1e-3), jax.random.key(2))
    assert float(m2["loss"]) <= float(m["loss"]) * 1.05
    # empty mask: unchanged
    same, _ = fit(new, obs, y, jnp.zeros_like(mask), hp, jax.random.key(3))
    chex.assert_trees_all_equal(same, new)


def test_mlp_value_init_and_bad_inputs():
    vf = bl.make_value(bl.ValueConfig(OBS, hidden_sizes=(8,)))
    s1, s2 = vf.init(jax.random.key(0)), vf.init(jax.random.key(1))
    chex.assert_trees_all_equal(s1.params, s2.params)  # fixed normc seed
    output_kernel = mlp_layers(s1.params)[1]["kernel"]
    np.testing.assert_allclose(np.linalg.norm(output_kernel, axis=0), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="obs"):
        vf.predict(s1, jnp.ones((2, OBS + 1)))
    with pytest.raises(ValueError, match="targets"):
        vf.fit(s1, jnp.ones((4, OBS)), jnp.ones(3), jnp.ones(4, bool),
               bl.ValueHParams.create(), jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        bl.ValueConfig(OBS, batch_size=0)
    with pytest.raises(ValueError, match="num_steps"):
        bl.ValueConfig(OBS, num_steps=0)
