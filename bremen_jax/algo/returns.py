"""Generalised advantage estimation on time-major batches of imagined rollouts (§5.2).

An imagined batch is ``[T, B]``: ``B`` columns (parallel model envs) stepped ``T`` times.
Within a column a path ends at any row where the task terminated or the horizon cut it
(``path_end = terminated | truncated``), and the next row of that column starts a new path
(the model env resets in place, §5.1). Rows with ``mask == 0`` (e.g. the unfinished tail
of a column, which the original throws away) take no part.

Original rule (§5.2, §14 quirk 2): the value after the last step of **every** path is 0,
at true termination and at horizon truncation alike. ``bootstrap_truncation=True`` is a
documented deviation that bootstraps with ``V(s_{t+1})`` at truncations only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _check_same_shape(**arrays: jax.Array) -> tuple[int, ...]:
    shapes = {name: tuple(jnp.shape(a)) for name, a in arrays.items()}
    first_name, first = next(iter(shapes.items()))
    if len(first) != 2:
        raise ValueError(f"{first_name} must be time-major [T, B]; got shape {first}")
    for name, shape in shapes.items():
        if shape != first:
            raise ValueError(f"{name} must have shape [T, B] = {first} like {first_name}; "
                             f"got {shape}")
    return first


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array,
        terminated: jax.Array, path_end: jax.Array, mask: jax.Array,
        gamma: jax.Array | float, lam: jax.Array | float,
        bootstrap_truncation: bool = False) -> tuple[jax.Array, jax.Array]:
    """GAE(γ, λ) advantages and value targets for time-major imagined rollouts.

    ``δ_t = r_t + γ·c_t·V(s_{t+1}) − V(s_t)`` with ``c_t = 1 − path_end_t`` (original: V := 0
    after the last step of every path) or ``c_t = 1 − terminated_t`` when
    ``bootstrap_truncation``; ``Â_t = δ_t + γλ·(1 − path_end_t)·Â_{t+1}`` (a reverse
    ``lax.scan`` that restarts at every path end); value target ``= Â_t + V(s_t)``.
    Masked rows output 0 and contribute nothing to earlier rows (the accumulation is
    reset there), even if their inputs are NaN.

    Args:
        rewards: ``[T, B]`` rewards (already KL-penalised if α > 0, see
            :func:`penalized_rewards`).
        values: ``[T, B]`` baseline V(s_t).
        next_values: ``[T, B]`` baseline V(s_{t+1}) of the true successor (used only where
            the path continues, or at truncations with ``bootstrap_truncation``).
        terminated: ``[T, B]`` 1 where the task's termination fired (bool or float).
        path_end: ``[T, B]`` 1 where the path ended (terminated or truncated).
        mask: ``[T, B]`` 1 for real rows, 0 for rows to ignore.
        gamma: discount γ (traced scalar).
        lam: GAE λ (traced scalar).
        bootstrap_truncation: static switch, see above (default False = original).

    Returns:
        ``(advantages [T, B], value_targets [T, B])``, float32, zero on masked rows.
    """
    _check_same_shape(rewards=rewards, values=values, next_values=next_values,
                      terminated=terminated, path_end=path_end, mask=mask)
    dtype = jnp.result_type(rewards, values, next_values, jnp.float32)
    rewards = jnp.asarray(rewards, dtype)
    values = jnp.asarray(values, dtype)
    next_values = jnp.asarray(next_values, dtype)
    valid = jnp.asarray(mask).astype(bool)
    ended = jnp.asarray(path_end).astype(bool)
    cut = jnp.asarray(terminated).astype(bool) if bootstrap_truncation else ended
    gamma = jnp.asarray(gamma, dtype)
    lam = jnp.asarray(lam, dtype)

    # jnp.where (not multiplication) so that NaN/inf in ignored entries cannot leak.
    next_v = jnp.where(cut, jnp.zeros_like(next_values), next_values)
    deltas = jnp.where(valid, rewards + gamma * next_v - values, 0.0)

    def backward(carry: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        delta, end, ok = xs
        carry = jnp.where(end, 0.0, carry)                 # a new path starts after this row
        adv = jnp.where(ok, delta + gamma * lam * carry, 0.0)  # masked rows reset the sum
        return adv, adv

    init = jnp.zeros(rewards.shape[1:], dtype)
    _, advantages = lax.scan(backward, init, (deltas, ended, valid), reverse=True)
    value_targets = jnp.where(valid, advantages + values, 0.0)
    return advantages, value_targets


def standardize(x: jax.Array, mask: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``(x − mean) / (std + eps)`` over the entries where ``mask`` is 1; 0 elsewhere.

    Mean and (population, ddof 0) std are taken over all masked entries of ``x`` regardless
    of its shape, as the original standardises advantages over every real step of the
    batch (§5.2). An all-zero mask gives all zeros.

    Args:
        x: ``[...]`` values.
        mask: ``[...]`` same shape, 1 for entries that count.
        eps: added to the std.

    Returns:
        ``[...]`` standardised values.
    """
    if jnp.shape(x) != jnp.shape(mask):
        raise ValueError(f"mask must have the shape of x {jnp.shape(x)}; got {jnp.shape(mask)}")
    valid = jnp.asarray(mask).astype(bool)
    x = jnp.asarray(x)
    count = jnp.maximum(jnp.sum(valid), 1).astype(x.dtype)
    xz = jnp.where(valid, x, 0.0)
    mean = jnp.sum(xz) / count
    var = jnp.sum(jnp.where(valid, jnp.square(x - mean), 0.0)) / count
    return jnp.where(valid, (xz - mean) / (jnp.sqrt(var) + eps), 0.0)


def penalized_rewards(rewards: jax.Array, kl_to_behavior: jax.Array,
                      alpha: jax.Array | float) -> jax.Array:
    """Explicit KL value penalty (§5.2): ``r − α·KL(π_θ(·|s) ‖ π̂_β(·|s))``.

    The original subtracts α·KL inside δ_t, which is the same as penalising the reward.
    α = 0 (the default everywhere in the paper's commands) returns ``rewards`` unchanged
    in value; a non-finite KL with α = 0 is ignored rather than propagated.

    Args:
        rewards: ``[...]``.
        kl_to_behavior: ``[...]`` per-step KL to the behaviour-cloned policy.
        alpha: penalty coefficient (traced scalar).

    Returns:
        ``[...]`` penalised rewards.
    """
    if jnp.shape(rewards) != jnp.shape(kl_to_behavior):
        raise ValueError(f"kl_to_behavior must have the shape of rewards {jnp.shape(rewards)}; "
                         f"got {jnp.shape(kl_to_behavior)}")
    alpha = jnp.asarray(alpha, jnp.result_type(rewards, jnp.float32))
    return jnp.where(alpha == 0, rewards, rewards - alpha * kl_to_behavior)
