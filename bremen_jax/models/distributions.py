"""Diagonal-Gaussian math as pure functions on ``(mean, log_std)``.

The BREMEN target and behaviour-cloned policies are diagonal Gaussians N(μ(s), diag σ(s)²)
(reference §4). The TRPO likelihood ratios and KL terms are computed with the *learned*
(μ, σ) even though actions are sampled with a fixed exploration noise (the
``--const_sampling`` quirk, §4); these helpers therefore take the distribution parameters
explicitly and never sample.

All functions broadcast over leading axes ``[...]`` and sum over the last (action) axis.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


def _check_last_axis(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"{name_a} and {name_b} must have a trailing action axis [..., act_dim]; "
            f"got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_a} and {name_b} must share the action dimension (last axis); "
            f"got shapes {a.shape} and {b.shape}")


def log_prob(mean: jax.Array, log_std: jax.Array, x: jax.Array) -> jax.Array:
    """Log-density of ``x`` under N(mean, diag exp(log_std)²), summed over action dims.

    Args:
        mean: ``[..., act_dim]``.
        log_std: ``[..., act_dim]`` (broadcastable against ``mean``).
        x: ``[..., act_dim]`` points to score.

    Returns:
        ``[...]`` log-probabilities.
    """
    _check_last_axis("mean", mean, "x", x)
    _check_last_axis("mean", mean, "log_std", log_std)
    z = (x - mean) * jnp.exp(-log_std)
    per_dim = -0.5 * jnp.square(z) - log_std - 0.5 * _LOG_2PI
    return jnp.sum(per_dim, axis=-1)


def kl(mean0: jax.Array, log_std0: jax.Array, mean1: jax.Array,
       log_std1: jax.Array) -> jax.Array:
    """KL(N0 ‖ N1) between diagonal Gaussians, summed over action dims.

    Per dimension: ``log σ1 − log σ0 + (σ0² + (μ0 − μ1)²) / (2 σ1²) − ½``. This is the exact
    closed form; the original rllab-style code adds 1e-8 to the denominator ``2σ1²``, which
    is ≲1e-4 relative even at BREMEN's σ ≈ e⁻⁵ (§14 quirk 3) and is omitted here.

    Args:
        mean0, log_std0: ``[..., act_dim]`` first distribution (the "old" one in TRPO).
        mean1, log_std1: ``[..., act_dim]`` second distribution.

    Returns:
        ``[...]`` KL divergences (non-negative up to rounding).
    """
    _check_last_axis("mean0", mean0, "mean1", mean1)
    _check_last_axis("log_std0", log_std0, "log_std1", log_std1)
    inv_var1 = jnp.exp(-2.0 * log_std1)
    per_dim = (log_std1 - log_std0
               + 0.5 * (jnp.exp(2.0 * log_std0) + jnp.square(mean0 - mean1)) * inv_var1
               - 0.5)
    return jnp.sum(per_dim, axis=-1)


def entropy(log_std: jax.Array) -> jax.Array:
    """Differential entropy of a diagonal Gaussian, summed over action dims.

    Args:
        log_std: ``[..., act_dim]``.

    Returns:
        ``[...]`` entropies ``Σ (log σ + ½ log(2πe))``.
    """
    if log_std.ndim == 0:
        raise ValueError(f"log_std must have a trailing action axis [..., act_dim]; "
                         f"got shape {log_std.shape}")
    return jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)
