"""Diagonal-Gaussian log_prob / KL / entropy against hand-computed and NumPy values."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.models import distributions


def _np_log_prob(mean, log_std, x):
    std = np.exp(log_std)
    return np.sum(-0.5 * ((x - mean) / std) ** 2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def _np_kl(m0, ls0, m1, ls1):
    v0, v1 = np.exp(2 * ls0), np.exp(2 * ls1)
    return np.sum(ls1 - ls0 + (v0 + (m0 - m1) ** 2) / (2 * v1) - 0.5, axis=-1)


def test_log_prob_hand_value():
    # 1-D standard normal at x = 1: -0.5 - 0.5 log(2π) = -1.4189385.
    got = distributions.log_prob(jnp.zeros((1,)), jnp.zeros((1,)), jnp.ones((1,)))
    np.testing.assert_allclose(got, -0.5 - 0.5 * math.log(2 * math.pi), rtol=1e-6)
    # 2-D: N(1, 2²) at x = 3 → z = 1: -0.5 - log 2 - 0.5 log 2π; plus N(0,1) at 0: -0.5 log 2π.
    got = distributions.log_prob(jnp.array([1.0, 0.0]), jnp.array([math.log(2.0), 0.0]),
                                 jnp.array([3.0, 0.0]))
    want = (-0.5 - math.log(2.0) - 0.5 * math.log(2 * math.pi)) - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_log_prob_matches_numpy_with_broadcast_log_std():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(4, 5, 3)).astype(np.float32)
    log_std = rng.normal(size=(3,)).astype(np.float32) * 0.5  # state-independent
    x = rng.normal(size=(4, 5, 3)).astype(np.float32)
    got = distributions.log_prob(mean, log_std, x)
    chex.assert_shape(got, (4, 5))
    np.testing.assert_allclose(got, _np_log_prob(mean, log_std, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(distributions.log_prob)(mean, log_std, x), got,
                               rtol=1e-6, atol=1e-6)


def test_kl_hand_value():
    # KL(N(0,1) ‖ N(1,2²)) = log 2 + (1 + 1)/(2·4) − ½ = 0.69314718 + 0.25 − 0.5 = 0.44314718.
    got = distributions.kl(jnp.array([0.0]), jnp.array([0.0]), jnp.array([1.0]),
                           jnp.array([math.log(2.0)]))
    np.testing.assert_allclose(got, math.log(2.0) - 0.25, rtol=1e-6)
    # Reverse direction: KL(N(1,4) ‖ N(0,1)) = −log 2 + (4 + 1)/2 − ½ = 2 − log 2.
    got = distributions.kl(jnp.array([1.0]), jnp.array([math.log(2.0)]), jnp.array([0.0]),
                           jnp.array([0.0]))
    np.testing.assert_allclose(got, 2.0 - math.log(2.0), rtol=1e-6)


def test_kl_matches_numpy_zero_on_self_and_nonnegative():
    rng = np.random.default_rng(1)
    m0, m1 = (rng.normal(size=(6, 2)).astype(np.float32) for _ in range(2))
    ls0, ls1 = (rng.normal(size=(6, 2)).astype(np.float32) * 0.7 for _ in range(2))
    got = distributions.kl(m0, ls0, m1, ls1)
    chex.assert_shape(got, (6,))
    np.testing.assert_allclose(got, _np_kl(m0, ls0, m1, ls1), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(got) >= 0)
    np.testing.assert_allclose(distributions.kl(m0, ls0, m0, ls0), np.zeros(6), atol=1e-6)
    # BREMEN's tiny σ ≈ e^-5: KL ≈ Δμ²/(2σ²) stays accurate in float32.
    tiny = distributions.kl(jnp.zeros((1,)), jnp.full((1,), -5.0), jnp.full((1,), 1e-3),
                            jnp.full((1,), -5.0))
    np.testing.assert_allclose(tiny, 1e-6 / (2 * math.exp(-10.0)), rtol=1e-3)


def test_entropy():
    # 1-D standard normal: ½ log(2πe) = 1.4189385; σ = 2 adds log 2 per dim.
    np.testing.assert_allclose(distributions.entropy(jnp.zeros((1,))),
                               0.5 * math.log(2 * math.pi * math.e), rtol=1e-6)
    got = distributions.entropy(jnp.array([[0.0, math.log(2.0)]]))
    chex.assert_shape(got, (1,))
    np.testing.assert_allclose(got, [math.log(2 * math.pi * math.e) + math.log(2.0)], rtol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="action dimension"):
        distributions.log_prob(jnp.zeros((4, 2)), jnp.zeros((2,)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="mean0 and mean1"):
        distributions.kl(jnp.zeros((2,)), jnp.zeros((2,)), jnp.zeros((3,)), jnp.zeros((3,)))
    with pytest.raises(ValueError, match="log_std"):
        distributions.entropy(jnp.zeros(()))
