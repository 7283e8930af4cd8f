"""The natural-gradient linear algebra of a TRPO step (§5.3): pytree inner products, conjugate
gradient, and the damped Fisher-vector products of the mean KL.

Original behaviour (``algos/trpo.py``, ``libs/misc/misc_utils.py``):

* Fisher-vector product = Hessian-vector product of the mean KL + damping·v (damping 0.1);
  here by default in Gauss-Newton form ``Jᵀ H_out J v`` (the same matrix at π = π_old, ~1.5x
  fewer FLOPs; ``TRPOConfig.fvp="hessian"`` is the original's form);
* CG, 10 iterations, residual tolerance 1e-10, on ``F x = −∇L``.

The TRPO step linearises the policy on the batch once (:func:`linearize_rows`: one forward
pass, chunk by chunk, keeping each chunk's VJP); π_old, the surrogate's gradient and every
Gauss-Newton product (:func:`make_rows_gauss_newton_fvp`) come from it.
:mod:`bremen_jax.algo.trpo` composes these into the step.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from bremen_jax.config import SCHEMA, TRPOConfig
from bremen_jax.models import distributions
from bremen_jax.types import Params

DistFn = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
FVP_METHODS = SCHEMA["trpo.fvp"].choices            # ("gauss_newton", "hessian")
# Rows per chunk of a batched policy pass (row_chunked): [2000, 200] float32 activations are
# 1.6 MB and stay in cache; on a 2-core CPU the whole-batch passes over 50K rows ran 2-4x slower.
ROW_CHUNK = 2000


def row_chunked(dist_fn: DistFn, chunk: int | None = ROW_CHUNK) -> DistFn:
    """``dist_fn`` evaluated ``chunk`` rows at a time (``lax.map(..., batch_size=chunk)``).

    The same rows and the same arithmetic, so the same result up to float rounding (sums over
    rows are taken per chunk, then over chunks). What changes is the memory traffic: each
    chunk's activations stay in cache, and differentiating (``jax.grad``, ``jax.linearize``,
    ``jax.linear_transpose``) gives a scan over the same chunks, so the gradient, the
    Fisher-vector products and the line search all run chunk by chunk. Batches of at most
    ``chunk`` rows (and ``chunk=None`` or 0) call ``dist_fn`` directly.

    Args:
        dist_fn: ``(params, obs [N, o]) -> (mean [N, a], log_std [N, a] or [a])``; it must
            also accept one row ``[o]`` (it is vmapped over the rows of a chunk).
        chunk: rows per chunk (static).

    Returns:
        ``(params, obs [N, o]) -> (mean [N, a], log_std [N, a])`` (a shared log_std comes
        back broadcast to ``[N, a]`` when chunked).
    """
    if not chunk:
        return dist_fn

    def chunked(params: Params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        if obs.ndim != 2 or obs.shape[0] <= chunk:
            return dist_fn(params, obs)
        return lax.map(lambda o: dist_fn(params, o), obs, batch_size=chunk)

    return chunked


class RowLinearization(NamedTuple):
    """The policy linearised at ``params`` on a batch, chunk by chunk (:func:`linearize_rows`).

    Attributes:
        outputs: ``(mean [N, a], log_std [N, a])`` at ``params``.
        vjps: the ``C`` chunks' VJP closures (``jax.vjp`` of one chunk's pass, stacked over the
            chunks; their residuals are the chunk's activations); transposed, each is the
            chunk's JVP.
        chunk: rows per chunk (the last chunk zero-padded); ``N = outputs[0].shape[0]``.
        params: the linearisation point.
    """

    outputs: tuple[jax.Array, jax.Array]
    vjps: Any
    chunk: int
    params: Params


def _chunks(x: jax.Array, chunk: int) -> jax.Array:
    """``[N, ...] -> [C, chunk, ...]``, the last chunk zero-padded."""
    pad = -x.shape[0] % chunk
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((-1, chunk) + x.shape[1:])


def _rows(x: jax.Array, n: int) -> jax.Array:
    """``[C, chunk, ...] -> [n, ...]`` (inverse of :func:`_chunks`)."""
    return x.reshape((-1,) + x.shape[2:])[:n]


def linearize_rows(dist_fn: DistFn, params: Params, obs: jax.Array,
                   chunk: int | None = ROW_CHUNK) -> RowLinearization:
    """One forward pass over ``obs``, ``chunk`` rows at a time, keeping each chunk's VJP.

    The pass gives π at ``params`` (the old distribution), the surrogate's gradient (one VJP
    per chunk, :func:`rows_vjp`) and the Gauss-Newton Fisher-vector products
    (:func:`make_rows_gauss_newton_fvp`: per chunk its JVP then its VJP, the chunk's residuals
    read once per product) without another forward pass. Same arithmetic as differentiating
    :func:`row_chunked` ``dist_fn``; a shared ``log_std [a]`` comes back broadcast.

    Args:
        dist_fn: ``(params, obs [n, o]) -> (mean [n, a], log_std [n, a] or [a])``.
        params: the linearisation point; obs: ``[N, o]``.
        chunk: rows per chunk (static); ``None`` or 0: the whole batch as one chunk.

    Returns:
        :class:`RowLinearization`.
    """
    n = obs.shape[0]
    chunk = min(chunk or n, n)

    def one(o: jax.Array):
        def f(p):
            mean, log_std = dist_fn(p, o)
            return mean, jnp.broadcast_to(log_std, mean.shape)
        return jax.vjp(f, params)

    outs, vjps = lax.map(one, _chunks(obs, chunk))
    return RowLinearization(jax.tree.map(lambda x: _rows(x, n), outs), vjps, chunk, params)


def rows_vjp(lin: RowLinearization, cotangent: tuple[jax.Array, jax.Array]) -> Params:
    """``Jᵀ u`` for output cotangents ``u = (d_mean [N, a], d_log_std [N, a])``: the chunks'
    VJPs, summed (a pytree like the params)."""
    cot = jax.tree.map(lambda x: _chunks(x, lin.chunk), cotangent)

    def body(acc, xs):
        vjp, u = xs
        return jax.tree.map(jnp.add, acc, vjp(u)[0]), None

    return lax.scan(body, jax.tree.map(jnp.zeros_like, lin.params), (lin.vjps, cot))[0]


def make_rows_gauss_newton_fvp(lin: RowLinearization, mask: jax.Array, mean_old: jax.Array,
                               log_std_old: jax.Array, damping: jax.Array | float
                               ) -> Callable[[Params], Params]:
    """:func:`make_gauss_newton_fvp` on a :class:`RowLinearization`: ``v -> Jᵀ H_out J v +
    damping·v`` in one scan over the chunks (per chunk: JVP, the mean KL's output Hessian,
    VJP), so each chunk's activations are read once per product and stay in cache.

    Args:
        lin: :func:`linearize_rows` at the current params; mask: ``[N]``.
        mean_old, log_std_old: ``[N, a]``, the old distribution (``lin.outputs``).
        damping: added multiple of the identity.
    """
    count = jnp.maximum(jnp.sum(mask.astype(bool)), 1).astype(jnp.float32)
    per_chunk = jax.tree.map(lambda x: _chunks(x, lin.chunk),
                             (mask, mean_old, log_std_old) + tuple(lin.outputs))

    def kl_sum(out, m, mu0, ls0):  # this chunk's share of the mean KL
        rows = distributions.kl(mu0, ls0, *out)
        return jnp.sum(jnp.where(m.astype(bool), rows, 0.0)) / count

    def fvp(v: Params) -> Params:
        def body(acc, xs):
            vjp, (m, mu0, ls0, mean, log_std) = xs
            (jv,) = jax.linear_transpose(vjp, (mean, log_std))((v,))
            grad_kl = jax.grad(lambda out: kl_sum(out, m, mu0, ls0))
            _, h_jv = jax.jvp(grad_kl, ((mean, log_std),), (jv,))
            return jax.tree.map(jnp.add, acc, vjp(h_jv)[0]), None

        jtj = lax.scan(body, jax.tree.map(jnp.zeros_like, v), (lin.vjps, per_chunk))[0]
        return jax.tree.map(lambda h, x: h + damping * x, jtj, v)

    return fvp


# --- pytree linear algebra -------------------------------------------------------------

def tree_vdot(a: Params, b: Params) -> jax.Array:
    """Σ over leaves of ⟨a, b⟩; elementwise product + sum so that no reduced-precision
    (TF32) matmul path is taken for the CG inner products on GPUs."""
    leaves = [jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    return functools.reduce(jnp.add, leaves, jnp.zeros((), jnp.float32))


def tree_axpy(alpha: jax.Array, x: Params, y: Params) -> Params:
    """``alpha·x + y`` leafwise."""
    return jax.tree.map(lambda xi, yi: (alpha * xi + yi).astype(yi.dtype), x, y)


def conjugate_gradient_with_info(matvec: Callable[[Params], Params], b: Params, iters: int,
                                 residual_tol: float | jax.Array) -> tuple[Params, jax.Array]:
    """Solves ``A x = b`` for SPD ``A`` by CG; returns ``(x, final r·r)``.

    See :func:`conjugate_gradient_tracked`, which also returns ``A x``.
    """
    x, rdotr, _ = conjugate_gradient_tracked(matvec, b, iters, residual_tol)
    return x, rdotr


def conjugate_gradient_tracked(matvec: Callable[[Params], Params], b: Params, iters: int,
                               residual_tol: float | jax.Array
                               ) -> tuple[Params, jax.Array, Params]:
    """Solves ``A x = b`` for SPD ``A`` by CG; returns ``(x, final r·r, A x)``.

    ``iters`` fixed iterations in a ``lax.fori_loop``; once ``r·r < residual_tol`` the state
    is frozen (branch-free equivalent of the original's early ``break``). Also guards
    ``pᵀAp = 0`` (e.g. ``b = 0``). ``A x`` is accumulated alongside ``x``
    (``Ax += α·A p``, the products CG computes anyway), so ``xᵀA x`` needs no extra product.

    Args:
        matvec: ``v -> A v`` on pytrees shaped like ``b``.
        b: right-hand side pytree.
        iters: static number of iterations.
        residual_tol: tolerance on the squared residual norm.

    Returns:
        ``(x, rdotr, ax)``: solution pytree like ``b``, the last squared residual norm, and
        ``A x`` (equal to ``matvec(x)`` up to float rounding).
    """
    x0 = jax.tree.map(jnp.zeros_like, b)
    rdotr0 = tree_vdot(b, b)

    def body(_, state):
        x, ax, r, p, rdotr = state
        active = rdotr >= residual_tol
        z = matvec(p)
        pz = tree_vdot(p, z)
        ok = active & (pz != 0) & jnp.isfinite(pz)
        alpha = jnp.where(ok, rdotr / jnp.where(ok, pz, 1.0), 0.0)
        x_new = tree_axpy(alpha, p, x)
        ax_new = tree_axpy(alpha, z, ax)
        r_new = tree_axpy(-alpha, z, r)
        new_rdotr = tree_vdot(r_new, r_new)
        mu = new_rdotr / jnp.where(rdotr > 0, rdotr, 1.0)
        p_new = tree_axpy(mu, p, r_new)

        def keep(new: Params, old: Params) -> Params:  # frozen once converged
            return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)

        return (keep(x_new, x), keep(ax_new, ax), keep(r_new, r), keep(p_new, p),
                jnp.where(ok, new_rdotr, rdotr))

    x, ax, _, _, rdotr = lax.fori_loop(0, iters, body, (x0, x0, b, b, rdotr0))
    return x, rdotr, ax


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, iters: int,
                       residual_tol: float | jax.Array) -> Params:
    """Solves ``A x = b`` by CG (see :func:`conjugate_gradient_with_info`); returns ``x``."""
    return conjugate_gradient_with_info(matvec, b, iters, residual_tol)[0]


def make_fvp(kl_fn: Callable[[Params], jax.Array], params: Params,
             damping: jax.Array | float) -> Callable[[Params], Params]:
    """Damped Fisher-vector product ``v -> ∇²KL(params)·v + damping·v`` (forward-over-reverse).

    ``kl_fn`` must hold the old distribution fixed (stop_gradient), so its Hessian at the
    current params is the Fisher matrix. Uses ``jax.linearize(jax.grad(kl_fn), params)``:
    the same forward-over-reverse JVP as ``jax.jvp(jax.grad(kl_fn), (params,), (v,))[1]``,
    but the primal gradient pass is done once and shared by all CG iterations.

    Args:
        kl_fn: ``params -> scalar`` mean KL(π_old ‖ π_params).
        params: point at which to linearise (the current policy params).
        damping: added multiple of the identity.

    Returns:
        ``fvp(v) -> Fv`` on pytrees shaped like ``params``.
    """
    _, hvp = jax.linearize(jax.grad(kl_fn), params)

    def fvp(v: Params) -> Params:
        return jax.tree.map(lambda h, x: h + damping * x, hvp(v), v)

    return fvp


def make_gauss_newton_fvp(dist_fn: DistFn, params: Params, obs: jax.Array, mask: jax.Array,
                          mean_old: jax.Array, log_std_old: jax.Array,
                          damping: jax.Array | float) -> Callable[[Params], Params]:
    """Damped Fisher-vector product ``v -> Jᵀ H_out J v + damping·v`` (Gauss-Newton form).

    ``J`` is the Jacobian of ``params -> dist_fn(params, obs)`` (one ``jax.linearize``; its
    transpose is the VJP) and ``H_out`` the Hessian of ``(mean, log_std) -> mean_kl`` at the
    current outputs: per row and action dim ``1/σ²`` for the mean and ``2`` for log σ, times the
    row's mask weight (computed by differentiating :func:`distributions.kl`, so a shared,
    state-independent log σ is handled too). With ``mean_old, log_std_old`` the outputs at
    ``params`` this is exactly the KL Hessian of :func:`make_fvp`.

    Args:
        dist_fn: ``(params, obs [N, o]) -> (mean [N, a], log_std [N, a] or [a])``.
        params: the current policy params (the linearisation point).
        obs: ``[N, obs_dim]``; mask: ``[N]``.
        mean_old, log_std_old: the old distribution (``dist_fn(params, obs)``, held fixed).
        damping: added multiple of the identity.

    Returns:
        ``fvp(v) -> Fv`` on pytrees shaped like ``params``.
    """
    outputs, jvp = jax.linearize(lambda p: dist_fn(p, obs), params)
    vjp = jax.linear_transpose(jvp, params)

    def kl_of_outputs(out):
        return mean_kl(lambda _, __: out, None, obs, mask, mean_old, log_std_old)

    _, out_hvp = jax.linearize(jax.grad(kl_of_outputs), outputs)

    def fvp(v: Params) -> Params:
        (jtj,) = vjp(out_hvp(jvp(v)))
        return jax.tree.map(lambda h, x: h + damping * x, jtj, v)

    return fvp


def make_trpo_fvp(cfg: TRPOConfig, dist_fn: DistFn, params: Params, obs: jax.Array,
                  mask: jax.Array, mean_old: jax.Array, log_std_old: jax.Array,
                  damping: jax.Array | float) -> Callable[[Params], Params]:
    """The damped Fisher-vector product chosen by ``cfg.fvp`` (what
    :func:`bremen_jax.algo.trpo.trpo_step` uses)."""
    if cfg.fvp == "hessian":
        kl_fn = functools.partial(mean_kl, dist_fn, obs=obs, mask=mask, mean_old=mean_old,
                                  log_std_old=log_std_old)
        return make_fvp(kl_fn, params, damping)
    return make_gauss_newton_fvp(dist_fn, params, obs, mask, mean_old, log_std_old, damping)


# --- the mean KL (the trust region's metric) ------------------------------------------

def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``x [N]`` over the rows with ``mask [N]`` nonzero (0 when there is none)."""
    valid = mask.astype(bool)
    count = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
    return jnp.sum(jnp.where(valid, x, 0.0)) / count


def mean_kl(dist_fn: DistFn, params: Params, obs: jax.Array, mask: jax.Array,
            mean_old: jax.Array, log_std_old: jax.Array) -> jax.Array:
    """Mean over masked rows of KL(π_old(·|s) ‖ π_θ(·|s)), summed over action dims.

    Args:
        dist_fn: ``(params, obs [N, o]) -> (mean [N, a], log_std [N, a])``.
        params: policy params θ.
        obs: ``[N, obs_dim]``; mask: ``[N]``; mean_old, log_std_old: ``[N, act_dim]`` (held
            fixed; pass stop_gradient'ed values).

    Returns:
        Scalar mean KL.
    """
    mean, log_std = dist_fn(params, obs)
    return masked_mean(distributions.kl(mean_old, log_std_old, mean, log_std), mask)
