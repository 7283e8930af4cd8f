"""GAE on hand-worked examples, against a per-path NumPy reference, and standardize."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.algo import returns

NAN = np.nan


def _example():
    """Three columns, T = 3, γ = 0.9, λ = 0.5 (γλ = 0.45).

    Column 0: a path terminates at t=1, a new path starts at t=2 and is truncated there.
    Column 1: a path truncated at t=1; row t=2 is masked and full of NaN.
    Column 2: only t=0 is real; t=1, t=2 are masked (an unfinished path that was dropped).
    """
    rewards = np.array([[1.0, 1.0, 1.0],
                        [2.0, 1.0, 5.0],
                        [3.0, NAN, 5.0]], np.float32)
    values = np.array([[0.5, 0.2, 0.2],
                       [1.0, 0.4, 7.0],
                       [1.5, NAN, 7.0]], np.float32)
    next_values = np.array([[1.0, 0.4, 0.3],
                            [4.0, 3.0, 7.0],
                            [2.0, NAN, 7.0]], np.float32)
    terminated = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0]], np.float32)
    path_end = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0]], np.float32)
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], np.float32)
    return rewards, values, next_values, terminated, path_end, mask


# Original rule (V = 0 after every path end):
# col 0: δ2 = 3 − 1.5 = 1.5 (end); δ1 = 2 − 1.0 = 1.0 (terminal); δ0 = 1 + 0.9·1.0 − 0.5 = 1.4
#        Â2 = 1.5; Â1 = 1.0 (path ends, t=2 does not flow back); Â0 = 1.4 + 0.45·1.0 = 1.85
#        targets Â + V = [2.35, 2.0, 3.0]
# col 1: δ1 = 1 − 0.4 = 0.6 (truncated, no bootstrap); δ0 = 1 + 0.9·0.4 − 0.2 = 1.16
#        Â1 = 0.6; Â0 = 1.16 + 0.45·0.6 = 1.43; t=2 masked → 0; targets [1.63, 1.0, 0]
# col 2: δ0 = 1 + 0.9·0.3 − 0.2 = 1.07; the masked t=1 does not leak → Â0 = 1.07; target 1.27
ADV = np.array([[1.85, 1.43, 1.07], [1.0, 0.6, 0.0], [1.5, 0.0, 0.0]], np.float32)
TGT = np.array([[2.35, 1.63, 1.27], [2.0, 1.0, 0.0], [3.0, 0.0, 0.0]], np.float32)
# bootstrap_truncation=True (bootstrap with V(s') at truncations, not at terminations):
# col 0: t=2 truncated → δ2 = 3 + 0.9·2.0 − 1.5 = 3.3; t=1 terminated, unchanged → Â0 = 1.85
#        targets [2.35, 2.0, 4.8]
# col 1: t=1 truncated → δ1 = 1 + 0.9·3.0 − 0.4 = 3.3; Â0 = 1.16 + 0.45·3.3 = 2.645
#        targets [2.845, 3.7, 0]
# col 2: unchanged.
ADV_BOOT = np.array([[1.85, 2.645, 1.07], [1.0, 3.3, 0.0], [3.3, 0.0, 0.0]], np.float32)
TGT_BOOT = np.array([[2.35, 2.845, 1.27], [2.0, 3.7, 0.0], [4.8, 0.0, 0.0]], np.float32)


@pytest.mark.parametrize("use_jit", [False, True])
def test_gae_hand_example(use_jit):
    fn = jax.jit(returns.gae, static_argnames="bootstrap_truncation") if use_jit else returns.gae
    args = _example()
    adv, tgt = fn(*args, jnp.float32(0.9), jnp.float32(0.5))
    chex.assert_shape((adv, tgt), (3, 3))
    chex.assert_type((adv, tgt), jnp.float32)
    chex.assert_tree_all_finite((adv, tgt))
    np.testing.assert_allclose(adv, ADV, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tgt, TGT, rtol=1e-5, atol=1e-6)

    adv, tgt = fn(*args, jnp.float32(0.9), jnp.float32(0.5), bootstrap_truncation=True)
    np.testing.assert_allclose(adv, ADV_BOOT, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tgt, TGT_BOOT, rtol=1e-5, atol=1e-6)


def _np_gae(r, v, nv, term, end, mask, gamma, lam, boot):
    """Column-by-column, path-by-path reference with Python loops."""
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        acc = 0.0
        for t in reversed(range(T)):
            if not mask[t, b]:
                acc = 0.0
                continue
            cut = term[t, b] if boot else end[t, b]
            delta = r[t, b] + (0.0 if cut else gamma * nv[t, b]) - v[t, b]
            acc = delta + (0.0 if end[t, b] else gamma * lam * acc)
            adv[t, b] = acc
    return adv, np.where(mask > 0, adv + v, 0.0)


@pytest.mark.parametrize("boot", [False, True])
def test_gae_matches_numpy_reference(boot):
    rng = np.random.default_rng(0)
    T, B = 20, 6
    r, v, nv = (rng.normal(size=(T, B)).astype(np.float32) for _ in range(3))
    term = rng.random((T, B)) < 0.1
    end = term | (rng.random((T, B)) < 0.1)
    mask = np.ones((T, B), bool)
    mask[15:, 2] = False  # a dropped unfinished tail
    mask[:, 4] = False    # a fully masked column
    gamma, lam = jnp.float32(0.99), jnp.float32(0.95)
    adv, tgt = returns.gae(r, v, nv, term, end, mask, gamma, lam, bootstrap_truncation=boot)
    want_adv, want_tgt = _np_gae(r, v, nv, term, end, mask, 0.99, 0.95, boot)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tgt, want_tgt, rtol=1e-4, atol=1e-5)


def test_gae_traced_gamma_lam_single_trace():
    args = _example()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def fn(gamma, lam):
        return returns.gae(*args, gamma, lam)

    a1, _ = fn(jnp.float32(0.9), jnp.float32(0.5))
    a2, _ = fn(jnp.float32(0.99), jnp.float32(1.0))
    np.testing.assert_allclose(a1, ADV, rtol=1e-5, atol=1e-6)
    # γ = 0.99, λ = 1: col 0 Â0 = (1 + 0.99·1 − 0.5) + 0.99·1.0 = 2.48
    np.testing.assert_allclose(a2[0, 0], 2.48, rtol=1e-5)


def test_gae_bad_shape_raises():
    r, v, nv, term, end, mask = _example()
    with pytest.raises(ValueError, match="values"):
        returns.gae(r, v[:2], nv, term, end, mask, 0.9, 0.5)
    with pytest.raises(ValueError, match=r"\[T, B\]"):
        returns.gae(r[0], v[0], nv[0], term[0], end[0], mask[0], 0.9, 0.5)


def test_standardize_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=(7, 5)).astype(np.float32)
    mask = rng.random((7, 5)) < 0.7
    x[~mask] = np.nan  # ignored entries may hold garbage
    got = returns.standardize(x, mask)
    sel = x[mask]
    want = np.zeros_like(x)
    want[mask] = (sel - sel.mean()) / (sel.std() + 1e-8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.mean(np.asarray(got)[mask]), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(np.asarray(got)[mask]), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(returns.standardize(x, np.zeros_like(mask)), 0.0)
    with pytest.raises(ValueError, match="mask"):
        returns.standardize(x, mask[:3])


def test_penalized_rewards():
    r = jnp.array([1.0, 2.0, 3.0])
    k = jnp.array([0.5, 1.0, jnp.inf])
    np.testing.assert_allclose(returns.penalized_rewards(r, k, 0.0), r)  # α = 0: KL ignored
    np.testing.assert_allclose(returns.penalized_rewards(r[:2], k[:2], jnp.float32(0.1)),
                               [0.95, 1.9], rtol=1e-6)
    with pytest.raises(ValueError, match="kl_to_behavior"):
        returns.penalized_rewards(r, k[:2], 0.1)
