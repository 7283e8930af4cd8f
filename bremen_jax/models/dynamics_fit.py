"""Fitting the dynamics ensemble: the normaliser of the training rows and the epoch loop.

:func:`fit_dynamics` is the body of :meth:`bremen_jax.models.dynamics.Dynamics.fit` (see there
and :mod:`bremen_jax.models.dynamics` for the algorithm and the original's settings). Its loop
state is one :class:`FitCarry`; its per-fit constants one :class:`FitRows`. The ensemble's
per-member loss and Adam step come from the :class:`~bremen_jax.models.dynamics.Dynamics` passed
in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.struct
import jax
import jax.numpy as jnp
import optax

from bremen_jax.config import DynamicsHParams
from bremen_jax.types import Metrics, Params, PRNGKey, Transition

if TYPE_CHECKING:  # the ensemble calls fit_dynamics; no import at run time (no cycle)
    from bremen_jax.models.dynamics import Dynamics

EPS = 1e-10  # the original's normalisation epsilon (model/dynamics.py: self.epsilon)


@flax.struct.dataclass
class Normalizer:
    """Per-dimension statistics of the training rows; ``[o]`` or ``[a]`` float32 each.

    ``reward_mean`` / ``reward_std`` (``[]`` float32) exist only with learned reward and
    termination heads (``dynamics.reward_model = "learned"``); otherwise they are ``None``, so the
    analytic ensemble's pytree is unchanged.
    """

    obs_mean: jax.Array
    obs_std: jax.Array
    act_mean: jax.Array
    act_std: jax.Array
    delta_mean: jax.Array
    delta_std: jax.Array
    reward_mean: jax.Array | None = None
    reward_std: jax.Array | None = None

    def inputs(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        """``[..., o], [..., a] -> [..., o + a]`` normalised model input ``[ŝ, â]``."""
        obs_n = (obs - self.obs_mean) / (self.obs_std + EPS)
        act_n = (action - self.act_mean) / (self.act_std + EPS)
        return jnp.concatenate([obs_n, act_n], axis=-1)

    def targets(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """``[..., o] -> [..., o]`` normalised delta ``(s' - s - μ_Δ) / (σ_Δ + 1e-10)``."""
        return (next_obs - obs - self.delta_mean) / (self.delta_std + EPS)

    def head_targets(self, data: Transition) -> jax.Array:
        """``[C, o + 2]`` targets with learned heads: normalised delta, normalised reward
        ``(r - μ_r) / (σ_r + 1e-10)`` and the termination flag ``done`` in {0, 1}."""
        reward_n = (data.reward - self.reward_mean) / (self.reward_std + EPS)
        return jnp.concatenate([self.targets(data.obs, data.next_obs), reward_n[:, None],
                                data.done.astype(jnp.float32)[:, None]], axis=-1)


@flax.struct.dataclass
class DynamicsState:
    """Params and Adam state with a leading ``[E]`` axis on every leaf, plus the normaliser."""

    params: Params
    opt_state: optax.OptState
    norm: Normalizer


def compute_normalizer(data: Transition, mask: jax.Array, reward: bool = False) -> Normalizer:
    """Masked mean / population std (``np.std``, ddof 0) of obs, action and delta (and reward).

    Args:
        data: leaves ``[C, ...]``.
        mask: ``[C]`` bool, rows to use.
        reward: also the reward's statistics (learned heads); else they stay ``None``.
    Returns:
        :class:`Normalizer` (zeros / ones where no row is selected: no NaN).
    """
    w = mask.astype(jnp.float32)[:, None]
    n = jnp.maximum(jnp.sum(w), 1.0)

    def stats(x):
        mean = jnp.sum(w * x, axis=0) / n
        var = jnp.sum(w * jnp.square(x - mean), axis=0) / n  # two-pass: no cancellation
        return mean, jnp.sqrt(var)

    obs_mean, obs_std = stats(data.obs)
    act_mean, act_std = stats(data.action)
    delta_mean, delta_std = stats(data.next_obs - data.obs)
    norm = Normalizer(obs_mean, obs_std, act_mean, act_std, delta_mean, delta_std)
    if reward:
        reward_mean, reward_std = stats(data.reward[:, None])
        norm = norm.replace(reward_mean=reward_mean[0], reward_std=reward_std[0])
    return norm


@flax.struct.dataclass
class FitRows:
    """Per-fit constants of :func:`fit_dynamics` (computed once, read by every epoch).

    Attributes:
        x: ``[C, o + a]`` normalised inputs; y: ``[C, o]`` normalised delta targets
            (``[C, o + 2]`` with learned heads: :meth:`Normalizer.head_targets`).
        train_mask: ``[C]`` bool training rows; val_used: ``[C]`` bool validation rows used.
        n_train / n_val: ``[]`` int32 row counts (``n_val``: rows used by early stopping).
        n_batches: ``[]`` int32 minibatches per epoch (``N_train // B``, at least 1 if any row).
        row_w: ``[B]`` float32 weight of each minibatch slot (``1 / min(N_train, B)`` or 0).
        l2_coeff: ``[]`` float32 ``weight_decay / N_train``; lr: ``[]`` float32 learning rate.
    """

    x: jax.Array
    y: jax.Array
    train_mask: jax.Array
    val_used: jax.Array
    n_train: jax.Array
    n_val: jax.Array
    n_batches: jax.Array
    row_w: jax.Array
    l2_coeff: jax.Array
    lr: jax.Array


@flax.struct.dataclass
class FitCarry:
    """Loop state of :func:`fit_dynamics`; ``[E]`` per member unless noted.

    Attributes:
        params / opt_state: current weights and Adam state, leading ``[E]`` axis.
        key: PRNG key of the minibatch orders.
        epoch: ``[]`` int32 epochs run so far (shared clock of all members).
        run: bool, member still training (active, not stopped).
        train_loss: mean minibatch MSE of each member's last epoch (NaN before the first).
        val: validation MSE at the member's last validation; best_val / best_epoch (int32):
            the best one so far and its epoch; epochs: int32 epochs run by each member.
        rejected: int32 Adam steps rejected because their result was not finite.
        best_params: weights at ``best_epoch`` (``restore_best`` only, else ``None``).
    """

    params: Params
    opt_state: optax.OptState
    key: PRNGKey
    epoch: jax.Array
    run: jax.Array
    train_loss: jax.Array
    val: jax.Array
    best_val: jax.Array
    best_epoch: jax.Array
    epochs: jax.Array
    rejected: jax.Array
    best_params: Params | None = None


def _fit_rows(dyn: Dynamics, data: Transition, train_mask: jax.Array,
              val_mask: jax.Array, hp: DynamicsHParams) -> tuple[Normalizer, FitRows]:
    """Normaliser of the train rows and the :class:`FitRows` of one fit (leaves ``[C, ...]``)."""
    cfg = dyn.cfg
    B = min(cfg.batch_size, data.obs.shape[0])  # a larger batch could never be filled from C rows
    norm = compute_normalizer(data, train_mask, reward=dyn.heads)
    x = norm.inputs(data.obs, data.action)            # [C, o + a]
    y = dyn.targets(norm, data)                       # [C, o] (or [C, o + 2] with heads)
    n_train = jnp.sum(train_mask.astype(jnp.int32))
    n_batches = jnp.where(n_train >= B, n_train // B, jnp.minimum(n_train, 1))
    n_eff = jnp.minimum(n_train, B)                    # rows per minibatch
    row_w = jnp.where(jnp.arange(B) < n_eff, 1.0 / jnp.maximum(n_eff, 1), 0.0)  # [B]
    l2_coeff = hp.weight_decay / jnp.maximum(n_train, 1).astype(jnp.float32)

    # --- validation rows: the original iterates full batches of `batch_size` in order ---------
    val_rank = jnp.cumsum(val_mask.astype(jnp.int32)) - 1
    n_val_all = jnp.sum(val_mask.astype(jnp.int32))
    n_val = n_val_all
    if cfg.val_drop_last:
        n_val = jnp.where(n_val_all >= cfg.batch_size,
                          n_val_all // cfg.batch_size * cfg.batch_size, n_val_all)
    val_used = val_mask & (val_rank < n_val)
    return norm, FitRows(x=x, y=y, train_mask=train_mask, val_used=val_used, n_train=n_train,
                         n_val=n_val, n_batches=n_batches, row_w=row_w, l2_coeff=l2_coeff,
                         lr=hp.learning_rate)


def _run_epoch(dyn: Dynamics, rows: FitRows, c: FitCarry) -> FitCarry:
    """One epoch: per-member random order of the train rows, ``n_batches`` Adam steps."""
    E, C, B = dyn.cfg.num_members, rows.x.shape[0], rows.row_w.shape[0]
    key, key_perm = jax.random.split(c.key)
    u = jax.random.uniform(key_perm, (E, C))
    order = jnp.argsort(jnp.where(rows.train_mask[None], u, 2.0), axis=1)  # [E, C] train first
    step = jax.vmap(dyn._member_update, in_axes=(0, 0, 0, 0, None, None, None, 0))

    def minibatch(i, inner):
        params, opt_state, loss_sum, rejected = inner
        idx = jax.lax.dynamic_slice_in_dim(order, i * B, B, axis=1)   # [E, B]
        params, opt_state, mse, bad = step(params, opt_state, rows.x[idx], rows.y[idx],
                                           rows.row_w, rows.lr, rows.l2_coeff, c.run)
        return params, opt_state, loss_sum + mse, rejected + bad.astype(jnp.int32)

    params, opt_state, loss_sum, rejected = jax.lax.fori_loop(
        0, rows.n_batches, minibatch, (c.params, c.opt_state, jnp.zeros(E), c.rejected))
    epoch_loss = loss_sum / jnp.maximum(rows.n_batches, 1).astype(jnp.float32)
    return c.replace(params=params, opt_state=opt_state, key=key, epoch=c.epoch + 1,
                     train_loss=jnp.where(c.run, epoch_loss, c.train_loss), rejected=rejected)


def _validate(dyn: Dynamics, rows: FitRows, params: Params) -> jax.Array:
    """``[E]`` validation MSE (no L2) of every member on the used validation rows."""
    return dyn._masked_mse(params, rows.x, rows.y, rows.val_used)


def _block(dyn: Dynamics, rows: FitRows, c: FitCarry) -> FitCarry:
    """Epochs up to and including the next validation epoch, then validate and early-stop."""
    cfg, E = dyn.cfg, dyn.cfg.num_members
    ev = cfg.eval_every
    next_val = (c.epoch + ev - 1) // ev * ev
    end = jnp.minimum(next_val + 1, cfg.max_epochs)
    trained = jax.lax.while_loop(lambda s: s.epoch < end,
                                 lambda s: _run_epoch(dyn, rows, s), c)
    val = _validate(dyn, rows, trained.params)
    last = end - 1
    improved = c.run & (last % ev == 0) & (val < c.best_val)
    best_epoch = jnp.where(improved, last, c.best_epoch)
    stop = (last % ev == 0) & (last - best_epoch >= cfg.patience)
    new = trained.replace(epoch=end, run=c.run & ~stop,
                          best_val=jnp.where(improved, val, c.best_val), best_epoch=best_epoch,
                          val=jnp.where(c.run, val, c.val),
                          epochs=jnp.where(c.run, end, c.epochs))
    if cfg.restore_best:
        new = new.replace(best_params=jax.tree.map(
            lambda b, p: jnp.where(improved.reshape((E,) + (1,) * (p.ndim - 1)), p, b),
            c.best_params, trained.params))
    return new


def fit_dynamics(dyn: Dynamics, state: DynamicsState, data: Transition, train_mask: jax.Array,
                 val_mask: jax.Array, hp: DynamicsHParams,
                 key: PRNGKey) -> tuple[DynamicsState, Metrics]:
    """The body of :meth:`Dynamics.fit` (bremen-algorithm.md §2, ``model/dynamics.py:189-214``).

    Epoch ``e``: each member draws its own random order of the train rows (argsort of uniform
    keys, train rows first) and takes ``N_train // B`` Adam steps (one step on all rows if
    ``N_train < B``). After epochs ``e % eval_every == 0`` every running member is validated; it
    records a new best if ``val < best`` and stops once ``e - best_epoch >= patience``. A stopped
    or inactive member is frozen (params and Adam state) while the others continue. A step whose
    new params or Adam state are not finite is rejected (that member keeps both as they were) and
    counted in the metric ``nonfinite_steps`` (all members).

    The loop state is one :class:`FitCarry`: the outer ``while_loop`` runs :func:`_block` (epochs
    up to the next validation epoch), whose inner ``while_loop`` runs :func:`_run_epoch`.

    Deviations: the best validation starts at ``+inf`` (original: 1000; identical unless the
    normalised MSE is >= 1000). Minibatch orders come from JAX keys (not NumPy's shared
    ``RandomState(1)``), drawn independently per member and epoch.
    """
    cfg, E = dyn.cfg, dyn.cfg.num_members
    norm, rows = _fit_rows(dyn, data, train_mask, val_mask, hp)
    active = jnp.arange(E) < hp.num_active
    init_val = _validate(dyn, rows, state.params)
    carry = FitCarry(params=state.params, opt_state=state.opt_state, key=key,
                     epoch=jnp.int32(0), run=active & (rows.n_train > 0),
                     train_loss=jnp.full(E, jnp.nan), val=init_val,
                     best_val=jnp.full(E, jnp.inf), best_epoch=jnp.zeros(E, jnp.int32),
                     epochs=jnp.zeros(E, jnp.int32), rejected=jnp.zeros(E, jnp.int32),
                     best_params=state.params if cfg.restore_best else None)
    carry = jax.lax.while_loop(lambda c: (c.epoch < cfg.max_epochs) & jnp.any(c.run),
                               lambda c: _block(dyn, rows, c), carry)

    params, val = carry.params, carry.val
    if cfg.restore_best:
        has_best = jnp.isfinite(carry.best_val)
        params = jax.tree.map(
            lambda b, p: jnp.where(has_best.reshape((E,) + (1,) * (p.ndim - 1)), b, p),
            carry.best_params, params)
        val = jnp.where(has_best, carry.best_val, val)
    metrics = {"epochs": carry.epochs, "val_loss": val, "best_val_loss": carry.best_val,
               "best_epoch": carry.best_epoch, "init_val_loss": init_val,
               "train_loss": carry.train_loss, "n_train": rows.n_train, "n_val": rows.n_val,
               "nonfinite_steps": jnp.sum(carry.rejected)}
    if dyn.heads:  # the validation error of each part of the returned weights (learned heads)
        metrics.update(dyn.head_errors(params, rows.x, rows.y, rows.val_used))
    return DynamicsState(params=params, opt_state=carry.opt_state, norm=norm), metrics
