"""Deterministic dynamics-model ensemble, vmapped over members (bremen-algorithm.md §2).

Each member is an MLP ``[ŝ, â] -> Δ̂`` (2×1024 ReLU by default) trained on normalised state
deltas. Everything that changes is an explicit pytree (:class:`DynamicsState`); the static pieces
(network, optimiser, config) live in :class:`Dynamics`, returned by :func:`make_dynamics`.

Faithful to the original (``model/dynamics.py``, ``libs/misc/data_handling/*``):

* Target: normalised delta ``(s' - s - μ_Δ) / (σ_Δ + 1e-10)``; inputs ``(x - μ) / (σ + 1e-10)``.
  Statistics are the mean / population std of the current training rows, recomputed at every
  :meth:`Dynamics.fit`.
* Loss: MSE over batch × dims plus ``c / N_train · Σ_hidden ½‖W‖²`` over the *hidden* kernels only;
  the original's ``reg_coeff`` is never passed through, so ``c = 1`` (``weight_decay`` here).
* Adam (lr 1e-3, TF1 betas/eps), minibatch 1000, a per-member random order of the training rows
  every epoch, last partial batch dropped (one batch of all rows if ``N_train < batch``).
* Validation MSE (no L2) after epochs 0, 5, 10, …; a member stops when
  ``epoch - best_epoch >= 20``; the *last* weights are kept (``restore_best=False``).
* Warm start: :meth:`fit` continues from the given params *and* Adam state (the original's Adam
  reset op is built from an empty variable list, so its moments persist across deployments).
* Prediction ``s' = s + σ_Δ · f(ŝ, â) + μ_Δ`` clipped to ``±obs_clip``. Actions are *not* clipped
  here: the original's model env clips them to [-1, 1] before calling the model (§5.1), and so
  does ``bremen_jax.algo.imagine``; training uses the stored (unclipped) actions, as the original.

Implementation (deviations: see :func:`fit_dynamics`): one ``fit`` is one XLA program, an outer
``lax.while_loop`` over *blocks* of epochs that end on a validation epoch (so validation sits at a
static position and never becomes a ``select`` under ``vmap``), an inner ``while_loop`` over epochs
and one over the ``N_train // batch`` minibatches (a dynamic trip count: no masked, wasted steps).
Members are vmapped; each has its own Adam state and no quantity couples members.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from bremen_jax.models.networks import hidden_kernels, make_mlp, PRECISIONS
from bremen_jax.types import Metrics, Params, PRNGKey, Transition

EPS = 1e-10  # the original's normalisation epsilon (model/dynamics.py: self.epsilon)
# TF1 AdamOptimizer defaults (b1 0.9, b2 0.999, eps 1e-8). TF adds eps to sqrt(v) before the
# bias correction of the step size, optax after it: a relative difference of order 1e-8.
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """Static (shape / trip-count) settings of the ensemble. Hashable; safe to close over."""

    num_members: int = 5            # static maximum ensemble size E
    hidden_sizes: tuple[int, ...] = (1024, 1024)
    batch_size: int = 1000
    max_epochs: int = 200
    eval_every: int = 5             # validation after epochs 0, 5, 10, ...
    patience: int = 20              # a member stops when epoch - best_epoch >= patience
    restore_best: bool = False      # original keeps the LAST weights; True restores the best ones
    obs_clip: float = 1e5
    activation: str = "relu"
    precision: str | None = "highest"   # matmul precision of the MLPs
    val_drop_last: bool = True      # original: validation over full batches of 1000 rows only
    eval_chunk: int = 4096          # rows per forward chunk in validation (memory bound only)

    def __post_init__(self):
        def is_int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        for name in ("num_members", "batch_size", "max_epochs", "eval_every", "eval_chunk"):
            value = getattr(self, name)
            if not is_int(value) or value <= 0:
                raise ValueError(f"DynamicsConfig.{name}: expected a positive int, got {value!r}")
        if not is_int(self.patience) or self.patience < 0:
            raise ValueError(
                f"DynamicsConfig.patience: expected an int >= 0, got {self.patience!r}")
        hidden = self.hidden_sizes
        if (not isinstance(hidden, (tuple, list))
                or not all(is_int(h) and h > 0 for h in hidden)):
            raise ValueError("DynamicsConfig.hidden_sizes: expected a tuple of positive ints, got "
                             f"{hidden!r}")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in hidden))  # hashable
        if not self.obs_clip > 0:
            raise ValueError(f"DynamicsConfig.obs_clip: expected > 0, got {self.obs_clip!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"DynamicsConfig.precision: expected None or one of {PRECISIONS}, "
                             f"got {self.precision!r}")


@flax.struct.dataclass
class DynamicsHParams:
    """Traced hyperparameters (vmappable over runs; changing them never recompiles).

    Attributes:
        learning_rate: float32 scalar Adam learning rate (1e-3).
        weight_decay: float32 scalar ``c`` of the L2 term ``c / N_train · Σ_hidden ½‖W‖²`` (1.0).
        num_active: int32 scalar; members ``[0, num_active)`` are fitted, the others are left
            unchanged by :meth:`Dynamics.fit` and must not be used for prediction.
    """

    learning_rate: jax.Array
    weight_decay: jax.Array
    num_active: jax.Array

    @staticmethod
    def default(cfg: DynamicsConfig = DynamicsConfig()) -> "DynamicsHParams":
        return DynamicsHParams(learning_rate=jnp.asarray(1e-3, jnp.float32),
                               weight_decay=jnp.asarray(1.0, jnp.float32),
                               num_active=jnp.asarray(cfg.num_members, jnp.int32))


@flax.struct.dataclass
class Normalizer:
    """Per-dimension statistics of the training rows; ``[o]`` or ``[a]`` float32 each."""

    obs_mean: jax.Array
    obs_std: jax.Array
    act_mean: jax.Array
    act_std: jax.Array
    delta_mean: jax.Array
    delta_std: jax.Array

    def inputs(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        """``[..., o], [..., a] -> [..., o + a]`` normalised model input ``[ŝ, â]``."""
        obs_n = (obs - self.obs_mean) / (self.obs_std + EPS)
        act_n = (action - self.act_mean) / (self.act_std + EPS)
        return jnp.concatenate([obs_n, act_n], axis=-1)

    def targets(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """``[..., o] -> [..., o]`` normalised delta ``(s' - s - μ_Δ) / (σ_Δ + 1e-10)``."""
        return (next_obs - obs - self.delta_mean) / (self.delta_std + EPS)


@flax.struct.dataclass
class DynamicsState:
    """Params and Adam state with a leading ``[E]`` axis on every leaf, plus the normaliser."""

    params: Params
    opt_state: Any
    norm: Normalizer


def adam_direction(opt_state: optax.ScaleByAdamState, b1: float = ADAM_B1, b2: float = ADAM_B2,
                   eps: float = ADAM_EPS) -> Params:
    """The update of ``optax.scale_by_adam`` (``eps_root=0``) from its *already updated* state.

    ``m̂ / (sqrt(v̂) + eps)`` with ``m̂ = mu / (1 - b1^count)``, ``v̂ = nu / (1 - b2^count)``;
    identical to the ``updates`` returned by ``optax.scale_by_adam(b1, b2, eps).update``.
    """
    c1 = 1.0 - b1 ** opt_state.count
    c2 = 1.0 - b2 ** opt_state.count

    def direction(m, v):
        return (m / c1.astype(m.dtype)) / (jnp.sqrt(v / c2.astype(v.dtype)) + eps)

    return jax.tree.map(direction, opt_state.mu, opt_state.nu)


def compute_normalizer(data: Transition, mask: jax.Array) -> Normalizer:
    """Masked mean / population std (``np.std``, ddof 0) of obs, action and delta.

    Args:
        data: leaves ``[C, ...]``.
        mask: ``[C]`` bool, rows to use.
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
    return Normalizer(obs_mean, obs_std, act_mean, act_std, delta_mean, delta_std)


@dataclasses.dataclass(frozen=True, eq=False)
class Dynamics:
    """Static pieces of the ensemble and its pure functions. Build with :func:`make_dynamics`."""

    obs_dim: int
    act_dim: int
    cfg: DynamicsConfig
    net: Any       # networks.Network
    tx: Any        # optax.scale_by_adam(ADAM_B1, ADAM_B2, ADAM_EPS); lr applied in fit

    # ---------------------------------------------------------------- init / predict
    def init(self, key: PRNGKey) -> DynamicsState:
        """Members from independent keys (Glorot-uniform, zero bias); identity normaliser."""
        params = jax.vmap(self.net.init)(jax.random.split(key, self.cfg.num_members))
        opt_state = jax.vmap(self.tx.init)(params)
        o, a = self.obs_dim, self.act_dim
        norm = Normalizer(jnp.zeros(o), jnp.ones(o), jnp.zeros(a), jnp.ones(a),
                          jnp.zeros(o), jnp.ones(o))
        return DynamicsState(params=params, opt_state=opt_state, norm=norm)

    def _predict(self, params: Params, norm: Normalizer, obs, action):
        delta_n = self.net.apply(params, norm.inputs(obs, action))
        next_obs = obs + norm.delta_std * delta_n + norm.delta_mean
        return jnp.clip(next_obs, -self.cfg.obs_clip, self.cfg.obs_clip)

    def predict(self, state: DynamicsState, obs: jax.Array, action: jax.Array,
                member: jax.Array) -> jax.Array:
        """Next observation from one member: ``[..., o], [..., a], int32 [] -> [..., o]``.

        ``s' = clip(s + σ_Δ · f(ŝ, â) + μ_Δ, ±obs_clip)``. ``action`` is used as given (callers
        clip it to the action bounds first, like the original's model env, §5.1).
        """
        params = jax.tree.map(lambda p: jax.lax.dynamic_index_in_dim(p, member, keepdims=False),
                              state.params)
        return self._predict(params, state.norm, obs, action)

    def predict_all(self, state: DynamicsState, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Next observation from every member: ``[..., o], [..., a] -> [E, ..., o]``."""
        return jax.vmap(self._predict, in_axes=(0, None, None, None))(
            state.params, state.norm, obs, action)

    # ---------------------------------------------------------------- losses
    def _masked_mse(self, params: Params, x: jax.Array, y: jax.Array,
                    mask: jax.Array) -> jax.Array:
        """Mean over the ``mask`` rows and dims of ``(f(x) - y)²`` per member. -> [E].

        The selected rows are compacted (stable argsort) and evaluated in static chunks of
        ``eval_chunk`` rows with a dynamic chunk count, so the cost follows the row count.
        """
        chunk = min(self.cfg.eval_chunk, x.shape[0])
        idx = jnp.argsort(~mask, stable=True)  # selected rows first, in order
        n = jnp.sum(mask.astype(jnp.int32))

        def body(i, total):
            pos = i * chunk + jnp.arange(chunk)
            rows = idx[jnp.minimum(pos, idx.shape[0] - 1)]
            pred = jax.vmap(self.net.apply, in_axes=(0, None))(params, x[rows])  # [E, chunk, o]
            err = jnp.sum(jnp.square(pred - y[rows]), axis=-1)                   # [E, chunk]
            return total + jnp.sum(jnp.where(pos < n, err, 0.0), axis=-1)

        total = jax.lax.fori_loop(0, (n + chunk - 1) // chunk, body,
                                  jnp.zeros(self.cfg.num_members))
        return total / (jnp.maximum(n, 1).astype(jnp.float32) * self.obs_dim)

    def val_loss(self, state: DynamicsState, data: Transition, mask: jax.Array) -> jax.Array:
        """Normalised one-step MSE (mean over rows × dims, no L2) of every member. -> [E].

        Args:
            state: uses ``state.norm`` (the statistics of the last fit).
            data: leaves ``[C, ...]``.
            mask: ``[C]`` bool rows to evaluate.
        """
        self._check_data(data, mask, "mask")
        x = state.norm.inputs(data.obs, data.action)
        y = state.norm.targets(data.obs, data.next_obs)
        return self._masked_mse(state.params, x, y, mask)

    def _member_loss(self, params: Params, x, y, w, l2_coeff):
        """One member: Σ_b w_b · mean_d (f(x_b) - y_b)² + l2_coeff · Σ_hidden ½‖W‖²."""
        pred = self.net.apply(params, x)
        mse = jnp.sum(w * jnp.mean(jnp.square(pred - y), axis=-1))
        l2 = sum(0.5 * jnp.sum(jnp.square(k)) for k in hidden_kernels(params))
        return mse + l2_coeff * l2, mse

    def _member_step(self, params, opt_state, x, y, w, lr, l2_coeff, run):
        """One Adam step of one member; ``run`` False leaves params and Adam state unchanged."""
        grads, mse = jax.grad(self._member_loss, has_aux=True)(params, x, y, w, l2_coeff)
        _, new_opt = self.tx.update(grads, opt_state, params)   # optax Adam moments
        keep = lambda new, old: jnp.where(run, new, old)  # noqa: E731 - fused into the update
        new_opt = jax.tree.map(keep, new_opt, opt_state)
        # Materialise the new moments before the parameter update reads them. Without the
        # barrier XLA re-derives mu/nu inside the parameter-update fusion from the *old* moments,
        # which then have to be copied (2 × 4 MiB per member and step) to allow in-place updates.
        new_opt = jax.lax.optimization_barrier(new_opt)
        direction = adam_direction(new_opt)
        new_params = jax.tree.map(lambda p, d: keep(p - lr * d, p), params, direction)
        return new_params, new_opt, mse

    def _check_data(self, data: Transition, mask: jax.Array, name: str):
        c = data.obs.shape[0] if data.obs.ndim == 2 else None
        if data.obs.ndim != 2 or data.obs.shape[1] != self.obs_dim:
            raise ValueError(f"data.obs: expected shape [C, {self.obs_dim}], got {data.obs.shape}")
        if data.next_obs.shape != data.obs.shape:
            raise ValueError(f"data.next_obs: expected shape {data.obs.shape}, "
                             f"got {data.next_obs.shape}")
        if data.action.shape != (c, self.act_dim):
            raise ValueError(f"data.action: expected shape [{c}, {self.act_dim}], "
                             f"got {data.action.shape}")
        if mask.shape != (c,) or mask.dtype != jnp.bool_:
            raise ValueError(f"{name}: expected a bool array of shape [{c}], "
                             f"got {mask.dtype}{list(mask.shape)}")

    # ---------------------------------------------------------------- fit
    def fit(self, state: DynamicsState, data: Transition, train_mask: jax.Array,
            val_mask: jax.Array, hp: DynamicsHParams,
            key: PRNGKey) -> tuple[DynamicsState, Metrics]:
        """Fine-tunes every active member on the train rows with per-member early stopping.

        Pure and jittable (jit it, or the deployment step that calls it, once); all loops are
        ``lax.while_loop``s, so nothing syncs with the host and nothing recompiles when the number
        of rows changes. See :func:`fit_dynamics` for the algorithm.

        Args:
            state: current ensemble (warm start: params *and* Adam state are kept).
            data: fixed-capacity buffer, leaves ``[C, ...]``; rows outside both masks are ignored.
            train_mask / val_mask: ``[C]`` bool.
            hp: :class:`DynamicsHParams`.
            key: PRNG key for the minibatch orders.
        Returns:
            ``(new_state, metrics)``; metrics: ``epochs`` [E] int32 epochs run (0 if inactive),
            ``val_loss`` [E] validation MSE of the returned weights, ``best_val_loss`` [E],
            ``best_epoch`` [E] int32, ``init_val_loss`` [E] (before training, new normaliser),
            ``train_loss`` [E] mean minibatch MSE (no L2) of each member's last epoch,
            ``n_train`` / ``n_val`` int32 rows (``n_val``: rows used by early stopping).
        """
        self._check_data(data, train_mask, "train_mask")
        self._check_data(data, val_mask, "val_mask")
        return fit_dynamics(self, state, data, train_mask, val_mask, hp, key)


def fit_dynamics(dyn: Dynamics, state: DynamicsState, data: Transition, train_mask: jax.Array,
                 val_mask: jax.Array, hp: DynamicsHParams,
                 key: PRNGKey) -> tuple[DynamicsState, Metrics]:
    """The body of :meth:`Dynamics.fit` (bremen-algorithm.md §2, ``model/dynamics.py:189-214``).

    Epoch ``e``: each member draws its own random order of the train rows (argsort of uniform
    keys, train rows first) and takes ``N_train // B`` Adam steps (one step on all rows if
    ``N_train < B``). After epochs ``e % eval_every == 0`` every running member is validated; it
    records a new best if ``val < best`` and stops once ``e - best_epoch >= patience``. A stopped
    or inactive member is frozen (params and Adam state) while the others continue.

    Deviations: the best validation starts at ``+inf`` (original: 1000; identical unless the
    normalised MSE is >= 1000). Minibatch orders come from JAX keys (not NumPy's shared
    ``RandomState(1)``), drawn independently per member and epoch.
    """
    cfg, E = dyn.cfg, dyn.cfg.num_members
    C = data.obs.shape[0]
    B = min(cfg.batch_size, C)  # a larger batch could never be filled from C rows

    # --- normalisation on the train rows; normalised inputs / targets computed once ---------
    norm = compute_normalizer(data, train_mask)
    x = norm.inputs(data.obs, data.action)            # [C, o + a]
    y = norm.targets(data.obs, data.next_obs)         # [C, o]
    n_train = jnp.sum(train_mask.astype(jnp.int32))
    n_batches = jnp.where(n_train >= B, n_train // B, jnp.minimum(n_train, 1))
    n_eff = jnp.minimum(n_train, B)                    # rows per minibatch
    row_w = jnp.where(jnp.arange(B) < n_eff, 1.0 / jnp.maximum(n_eff, 1), 0.0)  # [B]
    l2_coeff = hp.weight_decay / jnp.maximum(n_train, 1).astype(jnp.float32)
    lr = hp.learning_rate

    # --- validation rows: the original iterates full batches of `batch_size` in order ---------
    val_rank = jnp.cumsum(val_mask.astype(jnp.int32)) - 1
    n_val_all = jnp.sum(val_mask.astype(jnp.int32))
    n_val = n_val_all
    if cfg.val_drop_last:
        n_val = jnp.where(n_val_all >= cfg.batch_size,
                          n_val_all // cfg.batch_size * cfg.batch_size, n_val_all)
    val_used = val_mask & (val_rank < n_val)

    def validate(params):
        return dyn._masked_mse(params, x, y, val_used)

    step = jax.vmap(dyn._member_step, in_axes=(0, 0, 0, 0, None, None, None, 0))

    def run_epoch(carry):
        params, opt_state, run, train_loss, epoch, key = carry
        key, key_perm = jax.random.split(key)
        u = jax.random.uniform(key_perm, (E, C))
        order = jnp.argsort(jnp.where(train_mask[None], u, 2.0), axis=1)  # [E, C] train first

        def minibatch(i, inner):
            params, opt_state, loss_sum = inner
            idx = jax.lax.dynamic_slice_in_dim(order, i * B, B, axis=1)   # [E, B]
            params, opt_state, mse = step(params, opt_state, x[idx], y[idx], row_w, lr,
                                          l2_coeff, run)
            return params, opt_state, loss_sum + mse

        params, opt_state, loss_sum = jax.lax.fori_loop(
            0, n_batches, minibatch, (params, opt_state, jnp.zeros(E)))
        epoch_loss = loss_sum / jnp.maximum(n_batches, 1).astype(jnp.float32)
        train_loss = jnp.where(run, epoch_loss, train_loss)
        return params, opt_state, run, train_loss, epoch + 1, key

    def block(carry):
        """Epochs up to and including the next validation epoch, then validate."""
        c = carry
        ev = cfg.eval_every
        next_val = (c["epoch"] + ev - 1) // ev * ev
        end = jnp.minimum(next_val + 1, cfg.max_epochs)
        params, opt_state, _, train_loss, _, key = jax.lax.while_loop(
            lambda s: s[4] < end, run_epoch,
            (c["params"], c["opt_state"], c["run"], c["train_loss"], c["epoch"], c["key"]))
        val = validate(params)
        last = end - 1
        run = c["run"]
        improved = run & (last % ev == 0) & (val < c["best_val"])
        best_epoch = jnp.where(improved, last, c["best_epoch"])
        stop = (last % ev == 0) & (last - best_epoch >= cfg.patience)
        new = dict(params=params, opt_state=opt_state, train_loss=train_loss, epoch=end, key=key,
                   run=run & ~stop,
                   best_val=jnp.where(improved, val, c["best_val"]), best_epoch=best_epoch,
                   val=jnp.where(run, val, c["val"]), epochs=jnp.where(run, end, c["epochs"]))
        if cfg.restore_best:
            new["best_params"] = jax.tree.map(
                lambda b, p: jnp.where(improved.reshape((E,) + (1,) * (p.ndim - 1)), p, b),
                c["best_params"], params)
        return new

    active = jnp.arange(E) < hp.num_active
    init_val = validate(state.params)
    carry = dict(params=state.params, opt_state=state.opt_state, train_loss=jnp.full(E, jnp.nan),
                 epoch=jnp.int32(0), key=key, run=active & (n_train > 0),
                 best_val=jnp.full(E, jnp.inf), best_epoch=jnp.zeros(E, jnp.int32),
                 val=init_val, epochs=jnp.zeros(E, jnp.int32))
    if cfg.restore_best:
        carry["best_params"] = state.params
    carry = jax.lax.while_loop(lambda c: (c["epoch"] < cfg.max_epochs) & jnp.any(c["run"]),
                               block, carry)

    params, val = carry["params"], carry["val"]
    if cfg.restore_best:
        has_best = jnp.isfinite(carry["best_val"])
        params = jax.tree.map(
            lambda b, p: jnp.where(has_best.reshape((E,) + (1,) * (p.ndim - 1)), b, p),
            carry["best_params"], params)
        val = jnp.where(has_best, carry["best_val"], val)
    metrics = {"epochs": carry["epochs"], "val_loss": val, "best_val_loss": carry["best_val"],
               "best_epoch": carry["best_epoch"], "init_val_loss": init_val,
               "train_loss": carry["train_loss"], "n_train": n_train, "n_val": n_val}
    return DynamicsState(params=params, opt_state=carry["opt_state"], norm=norm), metrics


def make_dynamics(obs_dim: int, act_dim: int, cfg: DynamicsConfig = DynamicsConfig()) -> Dynamics:
    """Builds the ensemble's static pieces for ``obs_dim``/``act_dim`` (see :class:`Dynamics`)."""
    if not isinstance(obs_dim, int) or obs_dim <= 0:
        raise ValueError(f"obs_dim: expected a positive int, got {obs_dim!r}")
    if not isinstance(act_dim, int) or act_dim <= 0:
        raise ValueError(f"act_dim: expected a positive int, got {act_dim!r}")
    if not isinstance(cfg, DynamicsConfig):
        raise ValueError(f"cfg: expected a DynamicsConfig, got {type(cfg).__name__}")
    net = make_mlp(obs_dim + act_dim, cfg.hidden_sizes, obs_dim, activation=cfg.activation,
                   precision=cfg.precision)
    tx = optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)
    return Dynamics(obs_dim=obs_dim, act_dim=act_dim, cfg=cfg, net=net, tx=tx)
