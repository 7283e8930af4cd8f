"""TRPO update on a flat batch of imagined transitions (§5.3).

One :func:`trpo_step` = surrogate gradient, conjugate gradient on the damped Fisher-vector
product of the mean KL, step scaled to the trust-region boundary δ, and a backtracking
line search. Everything is shape-static and traces once; the caller scans it
over TRPO iterations.

Original behaviour (``algos/trpo.py``, ``libs/misc/misc_utils.py``):

* surrogate ``L(θ) = −(1/N) Σ_i π_θ(a_i|s_i)/π_old(a_i|s_i) · Â_i``; here the average is over
  masked rows only (the original averages over a zero-padded, truncated 50K-row batch,
  §5.3 / §14 quirk 4; padded rows have Â = 0 so only the denominator differs);
* trust region: mean over rows of KL(π_old ‖ π_θ), summed over action dims, ≤ δ;
* Fisher-vector product = Hessian-vector product of the mean KL + damping·v (damping 0.1);
  here by default in Gauss-Newton form ``Jᵀ H_out J v`` (the same matrix at π = π_old, ~1.5x
  fewer FLOPs; ``TRPOConfig.fvp="hessian"`` is the original's form);
* CG, 10 iterations, residual tolerance 1e-10, on ``F x = −∇L``;
* step ``x·sqrt(δ / (½ xᵀF x))`` (F includes the damping, as in the original);
* line search over fractions 0.5^k, k = 0..9: accept the first with actual improvement > 0
  and actual/expected > 0.1, expected = −∇L·(0.5^k step); otherwise keep the old params.
  The original does **not** check the KL there (``ls_check_kl=False``). Like the original's
  loop, the default ``line_search="sequential"`` stops at the first acceptable candidate;
  ``"parallel"`` evaluates all of them at once (same result).

The mean KL, conjugate gradient and Fisher-vector products live in
:mod:`bremen_jax.algo.natural_gradient`.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from bremen_jax.algo.natural_gradient import (
    ROW_CHUNK,
    DistFn,
    RowLinearization,
    conjugate_gradient_tracked,
    linearize_rows,
    make_rows_gauss_newton_fvp,
    make_trpo_fvp,
    masked_mean,
    mean_kl,
    row_chunked,
    rows_vjp,
    tree_axpy,
    tree_vdot,
)
from bremen_jax.config import SCHEMA, TRPOConfig, TRPOHParams
from bremen_jax.models import distributions
from bremen_jax.types import Metrics, Params, all_finite, keep_if

LINE_SEARCHES = SCHEMA["trpo.line_search"].choices  # ("sequential", "parallel")


# --- line search -----------------------------------------------------------------------

def line_search(loss_fn: Callable[[Params], jax.Array], kl_fn: Callable[[Params], jax.Array],
                params: Params, full_step: Params, expected_improve: jax.Array,
                cfg: TRPOConfig, hp: TRPOHParams,
                loss_before: jax.Array | None = None,
                eval_fn: Callable[[Params], tuple[jax.Array, jax.Array]] | None = None
                ) -> tuple[Params, Metrics]:
    """Branch-free backtracking line search over ``params + backtrack**k · full_step``.

    All ``cfg.ls_steps`` candidates are evaluated at once (``jax.vmap`` over fractions).
    Candidate k is acceptable when its loss is finite, ``improvement_k > 0`` and
    ``improvement_k / (expected_improve·frac_k) > cfg.accept_ratio``; with
    ``cfg.ls_check_kl`` also ``isfinite(kl_k) & kl_k <= hp.target_kl``. The first acceptable
    one is taken (``argmax`` over the bool vector); if none is, the old params are kept.

    Args:
        loss_fn: ``params -> scalar`` loss to decrease (the surrogate).
        kl_fn: ``params -> scalar`` mean KL(π_old ‖ π_params).
        params: current params.
        full_step: pytree like ``params``, the full (k = 0) step.
        expected_improve: scalar ``−∇L·full_step``.
        cfg: static config.
        hp: traced hparams (``target_kl``).
        loss_before: ``loss_fn(params)`` if already known (saves one evaluation).
        eval_fn: ``params -> (loss_fn(params), kl_fn(params))`` in one pass (e.g.
            :func:`objective_pair`: one policy forward per candidate instead of two);
            default: the two functions one after the other.

    Returns:
        ``(new_params, metrics)`` with metrics ``ls_accepted`` (float 0/1), ``ls_index``
        (int32, −1 when none), ``ls_frac`` (0 when none), ``loss_before``, ``loss_after``,
        ``kl_after`` (KL of the returned params), ``improvement``, ``expected_improve``
        (at the accepted fraction).
    """
    if loss_before is None:
        loss_before = loss_fn(params)
    fracs = cfg.ls_backtrack ** jnp.arange(cfg.ls_steps, dtype=jnp.float32)  # [K]

    if eval_fn is None:
        eval_fn = lambda p: (loss_fn(p), kl_fn(p))  # noqa: E731

    def evaluate(frac: jax.Array) -> tuple[jax.Array, jax.Array]:
        return eval_fn(tree_axpy(frac, full_step, params))

    def acceptable(loss, kl_value, frac):
        improvement = loss_before - loss
        ok = (jnp.isfinite(loss) & (improvement > 0)
              & (improvement / (expected_improve * frac) > cfg.accept_ratio))
        if cfg.ls_check_kl:
            ok = ok & jnp.isfinite(kl_value) & (kl_value <= hp.target_kl)
        return ok

    if cfg.line_search == "parallel":
        losses, kls = jax.vmap(evaluate)(fracs)                               # [K], [K]
        ok = acceptable(losses, kls, fracs)
        accepted = jnp.any(ok)
        idx = jnp.argmax(ok)
        loss_k, kl_k = losses[idx], kls[idx]
    else:  # sequential: stop at the first acceptable candidate
        def cond(c):
            k, found = c[0], c[1]
            return (k < cfg.ls_steps) & ~found

        def body(c):
            k = c[0]
            loss, kl_value = evaluate(fracs[k])
            found = acceptable(loss, kl_value, fracs[k])
            return k + jnp.where(found, 0, 1), found, loss, kl_value

        zero = jnp.zeros((), jnp.result_type(loss_before))  # float64 under x64
        k_end, accepted, loss_k, kl_k = lax.while_loop(
            cond, body, (jnp.int32(0), jnp.bool_(False), zero + loss_before, zero))
        idx = jnp.minimum(k_end, cfg.ls_steps - 1)
    frac = jnp.where(accepted, fracs[idx], 0.0)
    # jnp.where per leaf (not params + 0·step) so a non-finite step never leaks in.
    new_params = jax.tree.map(
        lambda p, s: jnp.where(accepted, (p + frac * s).astype(p.dtype), p), params, full_step)
    kl_after = jnp.where(accepted, kl_k, 0.0)
    metrics = {
        "ls_accepted": accepted.astype(jnp.float32),
        "ls_index": jnp.where(accepted, idx, -1).astype(jnp.int32),
        "ls_frac": frac,
        "loss_before": loss_before,
        "loss_after": jnp.where(accepted, loss_k, loss_before),
        "kl_after": kl_after,
        "improvement": jnp.where(accepted, loss_before - loss_k, 0.0),
        "expected_improve": jnp.where(accepted, expected_improve * frac, 0.0),
    }
    return new_params, metrics


# --- the surrogate (the KL and the CG/FVP algebra: bremen_jax.algo.natural_gradient) ----

def surrogate_loss(dist_fn: DistFn, params: Params, obs: jax.Array, actions: jax.Array,
                   advantages: jax.Array, mask: jax.Array, logp_old: jax.Array) -> jax.Array:
    """``L(θ) = −Σ_i mask_i·exp(log π_θ(a_i|s_i) − logp_old_i)·Â_i / Σ_i mask_i``.

    Args:
        dist_fn: ``(params, obs [N, o]) -> (mean [N, a], log_std [N, a])``.
        params: policy params θ.
        obs: ``[N, obs_dim]``; actions: ``[N, act_dim]``; advantages, mask, logp_old: ``[N]``.

    Returns:
        Scalar surrogate loss (to minimise).
    """
    mean, log_std = dist_fn(params, obs)
    ratio = jnp.exp(distributions.log_prob(mean, log_std, actions) - logp_old)
    return -masked_mean(ratio * advantages, mask)


def _check_batch(obs: jax.Array, actions: jax.Array, advantages: jax.Array,
                 mask: jax.Array) -> None:
    if obs.ndim != 2:
        raise ValueError(f"obs must be [N, obs_dim]; got shape {obs.shape}")
    n = obs.shape[0]
    if actions.ndim != 2 or actions.shape[0] != n:
        raise ValueError(f"actions must be [N={n}, act_dim]; got shape {actions.shape}")
    for name, arr in (("advantages", advantages), ("mask", mask)):
        if arr.shape != (n,):
            raise ValueError(f"{name} must be [N={n}]; got shape {arr.shape}")


# --- the step in named stages: prepare_batch -> old_distribution -> policy_gradient ->
# --- natural_step -> line_search (trpo_step composes them; benchmarks time them one by one)

class TRPOBatch(NamedTuple):
    """A flat batch with the ignored rows zeroed (NaN/inf there cannot reach the gradients).

    Attributes:
        obs: ``[N, obs_dim]``; actions: ``[N, act_dim]`` (as sampled, unclipped);
        advantages: ``[N]`` (standardised by the caller); mask: ``[N]``, 1 for real rows.
    """

    obs: jax.Array
    actions: jax.Array
    advantages: jax.Array
    mask: jax.Array


class OldDistribution(NamedTuple):
    """π_old on the batch, held fixed (stop_gradient'ed).

    Attributes:
        mean: ``[N, act_dim]``; log_std: ``[N, act_dim]`` (or ``[act_dim]``);
        logp: ``[N]`` log π_old of the batch's actions.
    """

    mean: jax.Array
    log_std: jax.Array
    logp: jax.Array


def prepare_batch(obs: jax.Array, actions: jax.Array, advantages: jax.Array,
                  mask: jax.Array) -> TRPOBatch:
    """Checks the shapes (``ValueError``) and zeroes the rows with ``mask == 0``."""
    _check_batch(obs, actions, advantages, mask)
    # Zero the ignored rows so NaN/inf there cannot reach the gradients (0·NaN = NaN).
    valid = mask.astype(bool)
    return TRPOBatch(obs=jnp.where(valid[:, None], obs, 0.0),
                     actions=jnp.where(valid[:, None], actions, 0.0),
                     advantages=jnp.where(valid, advantages, 0.0), mask=mask)


def old_distribution(dist_fn: DistFn, params: Params, batch: TRPOBatch) -> OldDistribution:
    """``dist_fn(params, obs)`` at entry (the batch was sampled by the current policy)."""
    mean_old, log_std_old = jax.tree.map(lax.stop_gradient, dist_fn(params, batch.obs))
    return OldDistribution(mean_old, log_std_old,
                           distributions.log_prob(mean_old, log_std_old, batch.actions))


def objectives(dist_fn: DistFn, batch: TRPOBatch, old: OldDistribution
               ) -> tuple[Callable[[Params], jax.Array], Callable[[Params], jax.Array]]:
    """``(loss_fn, kl_fn)``: ``params ->`` :func:`surrogate_loss` and :func:`mean_kl` on the
    batch against ``old``."""
    loss_fn = functools.partial(surrogate_loss, dist_fn, obs=batch.obs, actions=batch.actions,
                                advantages=batch.advantages, mask=batch.mask, logp_old=old.logp)
    kl_fn = functools.partial(mean_kl, dist_fn, obs=batch.obs, mask=batch.mask,
                              mean_old=old.mean, log_std_old=old.log_std)
    return loss_fn, kl_fn


def objective_pair(dist_fn: DistFn, batch: TRPOBatch, old: OldDistribution
                   ) -> Callable[[Params], tuple[jax.Array, jax.Array]]:
    """``params -> (surrogate, mean KL)`` from one ``dist_fn`` pass: the same two numbers as
    :func:`objectives`' ``(loss_fn, kl_fn)`` (the line search's fused candidate evaluation)."""

    def pair(params: Params) -> tuple[jax.Array, jax.Array]:
        out = dist_fn(params, batch.obs)
        fixed = lambda _, __: out  # noqa: E731  the pass already made
        return (surrogate_loss(fixed, None, batch.obs, batch.actions, batch.advantages,
                               batch.mask, old.logp),
                mean_kl(fixed, None, batch.obs, batch.mask, old.mean, old.log_std))

    return pair


def policy_gradient(dist_fn: DistFn, params: Params, batch: TRPOBatch, old: OldDistribution
                    ) -> tuple[jax.Array, Params]:
    """``(L(params), ∇L)`` of the surrogate; the gradient is a pytree like ``params``."""
    loss_fn, _ = objectives(dist_fn, batch, old)
    return jax.value_and_grad(loss_fn)(params)


def linearized_gradient(lin: RowLinearization, batch: TRPOBatch
                        ) -> tuple[OldDistribution, jax.Array, Params]:
    """:func:`old_distribution` and :func:`policy_gradient` from one linearisation
    (:func:`~bremen_jax.algo.natural_gradient.linearize_rows` at the current params): π_old is
    its forward pass, ``∇L`` the chunks' VJPs of ``∂L/∂(mean, log_std)``; no pass of its own.

    Returns:
        ``(old, L(params), ∇L)``.
    """
    mean_old, log_std_old = jax.tree.map(lax.stop_gradient, lin.outputs)
    old = OldDistribution(mean_old, log_std_old,
                          distributions.log_prob(mean_old, log_std_old, batch.actions))

    def loss_of_outputs(out):
        return surrogate_loss(lambda _, __: out, None, batch.obs, batch.actions,
                              batch.advantages, batch.mask, old.logp)

    loss, d_out = jax.value_and_grad(loss_of_outputs)(lin.outputs)
    return old, loss, rows_vjp(lin, d_out)


def natural_step(cfg: TRPOConfig, hp: TRPOHParams, dist_fn: DistFn, params: Params,
                 batch: TRPOBatch, old: OldDistribution, grad: Params,
                 lin: RowLinearization | None = None) -> tuple[Params, jax.Array, Metrics]:
    """The full step to the trust-region boundary: ``x = CG(F, −g)``, ``x·sqrt(δ / (½ xᵀF x))``.

    ``F`` is the damped Fisher-vector product chosen by ``cfg.fvp`` (:func:`make_trpo_fvp`;
    Gauss-Newton with ``lin``, the linearisation at ``params``: chunk by chunk from its stored
    activations, :func:`~bremen_jax.algo.natural_gradient.make_rows_gauss_newton_fvp`).
    The step is zero when ``½xᵀFx`` is not a finite positive number (``jnp.where`` per leaf, so
    a non-finite ``x`` never leaks in; cast back to each leaf's dtype), and the line search
    then keeps the old params.

    Returns:
        ``(full_step, expected_improve, metrics)``: a pytree like ``params``, the scalar
        ``−g·full_step``, and ``cg_residual`` (final r·r) and ``shs`` (½xᵀFx).
    """
    if lin is not None and cfg.fvp == "gauss_newton":
        fvp = make_rows_gauss_newton_fvp(lin, batch.mask, old.mean, old.log_std, hp.cg_damping)
    else:
        fvp = make_trpo_fvp(cfg, dist_fn, params, batch.obs, batch.mask, old.mean, old.log_std,
                            hp.cg_damping)
    neg_grad = jax.tree.map(jnp.negative, grad)
    x, cg_residual, fx = conjugate_gradient_tracked(fvp, neg_grad, cfg.cg_iters,
                                                    cfg.cg_residual_tol)
    shs = 0.5 * tree_vdot(x, fx if cfg.shs_from_cg else fvp(x))
    shs_ok = jnp.isfinite(shs) & (shs > 0)
    scale = jnp.where(shs_ok, jnp.sqrt(hp.target_kl / jnp.where(shs_ok, shs, 1.0)), 0.0)
    full_step = jax.tree.map(lambda xi: jnp.where(shs_ok, scale * xi, 0.0).astype(xi.dtype), x)
    expected_improve = tree_vdot(neg_grad, full_step)
    return full_step, expected_improve, {"cg_residual": cg_residual, "shs": shs}


def trpo_step(dist_fn: DistFn, params: Params, obs: jax.Array, actions: jax.Array,
              advantages: jax.Array, mask: jax.Array, cfg: TRPOConfig,
              hp: TRPOHParams, row_chunk: int | None = ROW_CHUNK) -> tuple[Params, Metrics]:
    """One TRPO update (§5.3) on a flat batch of ``N`` transitions.

    The stages: :func:`prepare_batch` (zero ignored rows),
    :func:`~bremen_jax.algo.natural_gradient.linearize_rows` (one forward pass, chunk by chunk,
    keeping the activations), :func:`linearized_gradient` (π_old = that pass at entry,
    stop_gradient'ed: the batch was sampled by the current policy; ``g = ∇L``; the same numbers
    as :func:`old_distribution` + :func:`policy_gradient`), :func:`natural_step` (``x = CG(F,
    −g)`` with the Fisher-vector products from the same activations, ``step = x·sqrt(δ / (½
    xᵀF x))``, zero when ``xᵀFx`` is not a finite positive number), :func:`line_search`.

    Args:
        dist_fn: ``(params, obs [N, o]) -> (mean [N, a], log_std [N, a])``; static.
        params: policy params pytree.
        obs: ``[N, obs_dim]``; actions: ``[N, act_dim]`` (as sampled, unclipped).
        advantages: ``[N]`` (standardised by the caller).
        mask: ``[N]`` 1 for real rows.
        cfg: static :class:`TRPOConfig`.
        hp: traced :class:`TRPOHParams`.
        row_chunk: static; every policy pass over the batch (old distribution, gradient,
            Fisher-vector products, line-search candidates) runs this many rows at a time
            (:func:`~bremen_jax.algo.natural_gradient.row_chunked`; same result up to float
            rounding); ``None`` = the whole batch at once.

    Returns:
        ``(new_params, metrics)``: metrics of :func:`line_search` plus ``surrogate_before``,
        ``surrogate_after``, ``cg_residual`` (final r·r), ``grad_norm``, ``step_norm`` (full
        step), ``applied_step_norm``, ``shs`` (½xᵀFx), ``entropy`` (mean, old policy),
        ``nonfinite`` (int32 1 when the surrogate, its gradient or the new params were not
        finite: the step is rejected and the old params kept; else 0).
    """
    batch = prepare_batch(obs, actions, advantages, mask)
    lin = linearize_rows(dist_fn, params, batch.obs, row_chunk)
    dist_fn = row_chunked(dist_fn, row_chunk)
    old, loss_before, grad = linearized_gradient(lin, batch)
    full_step, expected_improve, step_metrics = natural_step(cfg, hp, dist_fn, params, batch,
                                                             old, grad, lin)
    loss_fn, kl_fn = objectives(dist_fn, batch, old)
    new_params, metrics = line_search(loss_fn, kl_fn, params, full_step, expected_improve,
                                      cfg, hp, loss_before=loss_before,
                                      eval_fn=objective_pair(dist_fn, batch, old))
    # Reject a step computed from, or ending in, non-finite numbers: the old params are kept.
    ok = jnp.isfinite(loss_before) & all_finite(grad) & all_finite(new_params)
    new_params = keep_if(ok, new_params, params)
    applied = jax.tree.map(jnp.subtract, new_params, params)
    metrics = dict(metrics)
    metrics.update({
        "surrogate_before": metrics["loss_before"],
        "surrogate_after": metrics["loss_after"],
        "cg_residual": step_metrics["cg_residual"],
        "grad_norm": jnp.sqrt(tree_vdot(grad, grad)),
        "step_norm": jnp.sqrt(tree_vdot(full_step, full_step)),
        "applied_step_norm": jnp.sqrt(tree_vdot(applied, applied)),
        "shs": step_metrics["shs"],
        "entropy": masked_mean(distributions.entropy(old.log_std), mask),
        "nonfinite": (~ok).astype(jnp.int32),
    })
    return new_params, metrics
