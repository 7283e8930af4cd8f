"""Value baselines for TRPO's GAE (BREMEN §5.2).

* **Linear feature baseline** (default in the original, ``model/baselines.py:9-67``):
  ``phi = [s_hat, s_hat^2, t/100, (t/100)^2, (t/100)^3, 1]`` with
  ``s_hat = clip(normalised obs, -10, 10)`` and ``t`` the step index within the path,
  fitted by ridge regression ``(Phi^T Phi + reg I) c = Phi^T y`` with ``reg = 1e-5``,
  retried with ``reg * 10`` (up to 5 tries) when the solution is not finite.
* **MLP value function** (``--param_value``, ``model/baselines.py:70-140``): a 200-200
  tanh MLP on normalised observations, normc init (all layers column norm 1, fixed
  seed 1234), Adam(b1=0.5, b2=0.99, eps=1e-4, lr 3e-4), 20 full-batch steps per fit,
  never re-initialised.

Both take observations normalised by the policy's normaliser (the caller applies
``policy.normalize(params.obs_norm, obs)``), as the original shares the policy's
running statistics with the baseline.

Numerics of the ridge solve: the original solves the normal equations
``(Phi^T Phi + reg I) c = Phi^T y`` in float64 (``np.linalg.lstsq``). Here everything is
float32 (x64 is off), and the Gram matrix of these features is badly conditioned
(cond ~1e9-1e11 for 50K rows: cubic time features up to 1000 at H=1000, offsets of
``s_hat`` vs the constant column), so forming it loses ~1% of accuracy in the
predictions. We instead take a QR factorisation of the column-scaled design
``Phi D = Q R`` and solve the ridge problem as the least-squares system
``[R; sqrt(reg) D] u = [Q^T y; 0]``, ``c = D u``: the same solution in exact arithmetic,
with the conditioning of ``Phi`` instead of ``Phi^T Phi`` (measured on 50K rows x 38
features, H=250/1000: max prediction error relative to a float64 solve <1e-6, against
0.6-1.5% for float32 normal equations; ~0.1 s per fit on a loaded 2-core CPU).
Matmuls use ``Precision.HIGHEST`` (no TF32). The retry criterion is "all coefficients
finite" (the original only checks NaN); with QR a retry practically never triggers.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bremen_jax.config import ValueHParams
from bremen_jax.models.networks import apply_mlp, check_mlp_sizes, init_normc
from bremen_jax.types import Metrics, Params, PRNGKey, all_finite, keep_if

HIGHEST = jax.lax.Precision.HIGHEST
NUM_RIDGE_TRIES = 5


# --------------------------------------------------------------------------------------
# Linear feature baseline.
# --------------------------------------------------------------------------------------


def num_linear_features(obs_dim: int) -> int:
    """Feature size ``2 * obs_dim + 4``."""
    return 2 * obs_dim + 4


def linear_features(obs_hat: jax.Array, t: jax.Array) -> jax.Array:
    """Features of the linear baseline.

    Args:
        obs_hat: ``[..., o]`` normalised observations (clipped here to ``[-10, 10]``).
        t: ``[...]`` step index within the path (int or float).

    Returns:
        ``[..., 2o + 4]`` float32 ``[s, s^2, t/100, (t/100)^2, (t/100)^3, 1]``.
    """
    if t.shape != obs_hat.shape[:-1]:
        raise ValueError(f"t: expected shape {obs_hat.shape[:-1]} (obs_hat without its "
                         f"last dim), got {t.shape}")
    o = jnp.clip(obs_hat.astype(jnp.float32), -10.0, 10.0)
    al = (t.astype(jnp.float32) / 100.0)[..., None]
    return jnp.concatenate([o, o * o, al, al * al, al * al * al, jnp.ones_like(al)],
                           axis=-1)


@flax.struct.dataclass
class LinearBaseline:
    """``coeffs``: ``[2o + 4]`` float32 ridge coefficients."""

    coeffs: jax.Array


def init_linear_baseline(obs_dim: int) -> LinearBaseline:
    """Zero coefficients: predicts 0, like the original before its first fit."""
    if int(obs_dim) <= 0:
        raise ValueError(f"obs_dim must be a positive int, got {obs_dim!r}")
    return LinearBaseline(coeffs=jnp.zeros((num_linear_features(obs_dim),), jnp.float32))


def first_finite(candidates: jax.Array, fallback: jax.Array) -> jax.Array:
    """The first row of ``candidates [K, F]`` whose entries are all finite.

    Returns ``fallback [F]`` when no row is finite. Branch-free.
    """
    ok = jnp.all(jnp.isfinite(candidates), axis=-1)  # [K]
    idx = jnp.argmax(ok)  # first True (0 if none)
    return jnp.where(jnp.any(ok), candidates[idx], fallback)


def ridge_candidates(features: jax.Array, targets: jax.Array, mask: jax.Array,
                     reg: float | jax.Array = 1e-5,
                     num_tries: int = NUM_RIDGE_TRIES) -> jax.Array:
    """Ridge solutions ``argmin ||Phi c - y||^2 + r ||c||^2`` for ``r = reg * 10**k``.

    Solved by one QR of the column-scaled masked design (``Phi D = Q R``; ``Q^T y`` is
    read off the R factor of ``[Phi D | y]``), then one small QR per ``r`` of the
    augmented system ``[R; sqrt(r) D] u = [Q^T y; 0]``, ``c = D u`` (see the module
    docstring for why not the normal equations).

    Args:
        features: ``[N, F]``; targets: ``[N]``; mask: ``[N]`` bool.
        reg: first ridge coefficient (float or traced scalar).
        num_tries: number of candidates ``k = 0..num_tries-1``.

    Returns:
        ``[num_tries, F]`` float32 candidate coefficients (may be non-finite).
    """
    num_f = features.shape[-1]
    phi = jnp.where(mask[:, None], features.astype(jnp.float32), 0.0)
    y = jnp.where(mask, targets.astype(jnp.float32), 0.0)
    norms = jnp.sqrt(jnp.sum(jnp.square(phi), axis=0))  # [F]
    d = jnp.where(norms > 0, 1.0 / jnp.where(norms > 0, norms, 1.0), 1.0)
    # R of [Phi D | y] holds R and Q^T y without forming Q: [K, F + 1], K = min(N, F+1).
    r_aug = jnp.linalg.qr(jnp.concatenate([phi * d, y[:, None]], axis=1), mode="r")
    r, qty = r_aug[:, :num_f], r_aug[:, num_f]
    rhs = jnp.concatenate([qty, jnp.zeros((num_f,), jnp.float32)])
    regs = jnp.asarray(reg, jnp.float32) * (
        10.0 ** jnp.arange(num_tries, dtype=jnp.float32))

    def solve(rg):
        aug = jnp.concatenate([r, jnp.diag(jnp.sqrt(rg) * d)], axis=0)  # [K+F, F]
        q2, r2 = jnp.linalg.qr(aug)
        u = jax.scipy.linalg.solve_triangular(
            r2, jnp.matmul(q2.T, rhs, precision=HIGHEST), lower=False)
        return u * d

    return jax.vmap(solve)(regs)


def fit_linear_baseline(features: jax.Array, targets: jax.Array, mask: jax.Array,
                        reg: float | jax.Array = 1e-5,
                        prev: Optional[LinearBaseline] = None) -> LinearBaseline:
    """Ridge fit of the linear baseline over the masked rows (§5.2).

    Args:
        features: ``[..., F]`` from :func:`linear_features`.
        targets: ``[...]`` value targets (``A_t + V(s_t)``).
        mask: ``[...]`` bool, real (non-padding) steps.
        reg: initial ridge coefficient; multiplied by 10 on failure, up to 5 tries.
        prev: coefficients kept when every try is non-finite (zeros when ``None``).

    Returns:
        The fitted :class:`LinearBaseline`.
    """
    return fit_linear_checked(features, targets, mask, reg, prev)[0]


def fit_linear_checked(features: jax.Array, targets: jax.Array, mask: jax.Array,
                       reg: float | jax.Array = 1e-5, prev: LinearBaseline | None = None
                       ) -> tuple[LinearBaseline, jax.Array]:
    """:func:`fit_linear_baseline` and a ``[]`` bool: every ridge try was non-finite (the fit
    was rejected, ``prev`` kept)."""
    num_f = features.shape[-1]
    if targets.shape != features.shape[:-1] or mask.shape != features.shape[:-1]:
        raise ValueError(
            f"targets and mask: expected shape {features.shape[:-1]} (features without "
            f"its last dim), got {targets.shape} and {mask.shape}")
    if prev is not None and prev.coeffs.shape != (num_f,):
        raise ValueError(f"prev.coeffs: expected shape [{num_f}], got "
                         f"{prev.coeffs.shape}")
    fallback = (jnp.zeros((num_f,), jnp.float32) if prev is None
                else prev.coeffs.astype(jnp.float32))
    cands = ridge_candidates(jnp.reshape(features, (-1, num_f)), jnp.reshape(targets, (-1,)),
                             jnp.reshape(mask, (-1,)).astype(bool), reg)
    rejected = ~jnp.any(jnp.all(jnp.isfinite(cands), axis=-1))
    return LinearBaseline(coeffs=first_finite(cands, fallback)), rejected


def refit_linear(prev: LinearBaseline, obs_hat: jax.Array, t: jax.Array, targets: jax.Array,
                 mask: jax.Array) -> LinearBaseline:
    """Refit of the linear baseline on a batch (the end of a TRPO iteration, §5.2).

    Args:
        prev: the current coefficients (kept when every ridge try is non-finite).
        obs_hat: ``[..., o]`` normalised observations; t: ``[...]`` step index in the path.
        targets: ``[...]`` value targets; mask: ``[...]`` real (non-padding) steps (any dtype).

    Returns:
        ``fit_linear_baseline(linear_features(obs_hat, t), targets, mask, prev=prev)``;
        :func:`refit_linear_checked` also says whether the fit was rejected.
    """
    return refit_linear_checked(prev, obs_hat, t, targets, mask)[0]


def refit_linear_checked(prev: LinearBaseline, obs_hat: jax.Array, t: jax.Array,
                         targets: jax.Array, mask: jax.Array) -> tuple[LinearBaseline, jax.Array]:
    """:func:`refit_linear` and a ``[]`` bool: no ridge try was finite (``prev`` kept)."""
    return fit_linear_checked(linear_features(obs_hat, t), targets, mask.astype(bool),
                              prev=prev)


def predict_linear(baseline: LinearBaseline, features: jax.Array) -> jax.Array:
    """``[..., F] -> [...]`` value predictions."""
    if features.shape[-1] != baseline.coeffs.shape[0]:
        raise ValueError(f"features: expected last dim {baseline.coeffs.shape[0]}, got "
                         f"shape {features.shape}")
    return jnp.matmul(features, baseline.coeffs, precision=HIGHEST)


# --------------------------------------------------------------------------------------
# MLP value function (--param_value).
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ValueConfig:
    """Static MLP value-function configuration (original ``MLPBaseline``).

    Attributes:
        obs_dim: observation size.
        hidden_sizes: tanh hidden widths (original ``(200, 200)``).
        num_steps: Adam steps per fit (original 20 "epochs" of one full batch each).
        batch_size: ``None`` = full batch over the masked rows (original); otherwise
            rows sampled uniformly with replacement from the masked rows per step.
        init_seed: fixed normc seed (original 1234); ``None`` uses the init key.
        adam_b1, adam_b2, adam_eps: original Adam(0.5, 0.99, 1e-4).
    """

    obs_dim: int
    hidden_sizes: Tuple[int, ...] = (200, 200)
    num_steps: int = 20
    batch_size: Optional[int] = None
    init_seed: Optional[int] = 1234
    adam_b1: float = 0.5
    adam_b2: float = 0.99
    adam_eps: float = 1e-4

    def __post_init__(self):
        hidden = check_mlp_sizes("ValueConfig", self.hidden_sizes, obs_dim=self.obs_dim,
                                 num_steps=self.num_steps)
        object.__setattr__(self, "hidden_sizes", hidden)
        if self.batch_size is not None and (
                not isinstance(self.batch_size, (int, np.integer)) or self.batch_size <= 0):
            raise ValueError("ValueConfig.batch_size must be None or a positive int, "
                             f"got {self.batch_size!r}")


@flax.struct.dataclass
class ValueState:
    """MLP value state: network parameters, Adam state, total steps (``[]`` int32)."""

    params: Params
    opt_state: optax.OptState
    step: jax.Array


def _masked_mse(net: Params, obs: jax.Array, targets: jax.Array,
                weights: jax.Array) -> jax.Array:
    pred = apply_mlp(net, obs, "tanh")[..., 0]
    return jnp.sum(weights * jnp.square(pred - targets)) / jnp.maximum(jnp.sum(weights),
                                                                      1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class ValueFunction:
    """Pure MLP value-function functions; build with :func:`make_value`."""

    cfg: ValueConfig

    @property
    def optimizer(self) -> optax.GradientTransformation:
        c = self.cfg
        return optax.scale_by_adam(b1=c.adam_b1, b2=c.adam_b2, eps=c.adam_eps)

    def init(self, key: PRNGKey) -> ValueState:
        """Normc init (column norm 1 in every layer, as the original)."""
        sizes = (self.cfg.obs_dim, *self.cfg.hidden_sizes, 1)
        net = init_normc(key, sizes, self.cfg.init_seed, output_std=1.0)
        return ValueState(params=net, opt_state=self.optimizer.init(net),
                          step=jnp.zeros((), jnp.int32))

    def predict(self, state: ValueState, obs: jax.Array) -> jax.Array:
        """``obs [..., o]`` (normalised) ``-> [...]`` values."""
        if obs.shape[-1] != self.cfg.obs_dim:
            raise ValueError(f"obs: expected shape [..., {self.cfg.obs_dim}], got "
                             f"{obs.shape}")
        return apply_mlp(state.params, obs.astype(jnp.float32), "tanh")[..., 0]

    def fit(self, state: ValueState, obs: jax.Array, targets: jax.Array,
            mask: jax.Array, hp: ValueHParams,
            key: PRNGKey) -> Tuple[ValueState, Metrics]:
        """Regress the value net on the masked targets (warm start, Adam state kept).

        Args:
            state: current value state.
            obs: ``[..., o]`` normalised observations.
            targets: ``[...]`` value targets.
            mask: ``[...]`` bool, rows to use.
            hp: traced hyperparameters.
            key: minibatch sampling (unused with ``batch_size=None``).

        Returns:
            ``(state, metrics)`` with ``loss_initial``/``loss`` = masked full-data MSE
            before/after the fit and ``nonfinite`` (int32 1 when the fitted params or Adam
            state were not finite: the fit is rejected, the state kept). An empty mask leaves
            the state unchanged.
        """
        o = self.cfg.obs_dim
        if obs.shape[-1] != o or targets.shape != obs.shape[:-1] or \
                mask.shape != obs.shape[:-1]:
            raise ValueError(
                f"expected obs [..., {o}] with targets and mask shaped like obs without "
                f"its last dim; got obs {obs.shape}, targets {targets.shape}, mask "
                f"{mask.shape}")
        obs = jnp.reshape(obs, (-1, o)).astype(jnp.float32)
        targets = jnp.reshape(targets, (-1,)).astype(jnp.float32)
        mask = jnp.reshape(mask, (-1,)).astype(bool)
        weights = mask.astype(jnp.float32)
        n = jnp.sum(mask.astype(jnp.int32))
        valid_rows = jnp.argsort(~mask, stable=True)
        lr = hp.learning_rate
        batch_size = self.cfg.batch_size
        grad_fn = jax.value_and_grad(_masked_mse)

        def step_fn(carry, i):
            net, opt_state = carry
            if batch_size is None:
                _, grads = grad_fn(net, obs, targets, weights)
            else:
                j = jax.random.randint(jax.random.fold_in(key, i), (batch_size,), 0,
                                       jnp.maximum(n, 1))
                rows = valid_rows[j]
                _, grads = grad_fn(net, obs[rows], targets[rows],
                                   jnp.ones((batch_size,), jnp.float32))
            updates, opt_state = self.optimizer.update(grads, opt_state, net)
            net = jax.tree.map(lambda p, u: p - lr * u, net, updates)
            return (net, opt_state), None

        loss_initial = _masked_mse(state.params, obs, targets, weights)
        (net, opt_state), _ = jax.lax.scan(
            step_fn, (state.params, state.opt_state),
            jnp.arange(self.cfg.num_steps, dtype=jnp.int32))
        new_state = ValueState(params=net, opt_state=opt_state,
                               step=state.step + self.cfg.num_steps)
        rejected = (n > 0) & ~all_finite(new_state)   # a non-finite fit keeps the old state
        new_state = keep_if((n > 0) & ~rejected, new_state, state)
        metrics = {"loss_initial": loss_initial,
                   "loss": _masked_mse(new_state.params, obs, targets, weights),
                   "nonfinite": rejected.astype(jnp.int32)}
        return new_state, metrics


def make_value(cfg: ValueConfig) -> ValueFunction:
    """Build the MLP value-function functions for a static configuration."""
    if not isinstance(cfg, ValueConfig):
        raise ValueError(f"cfg must be a ValueConfig, got {type(cfg).__name__}")
    return ValueFunction(cfg)
