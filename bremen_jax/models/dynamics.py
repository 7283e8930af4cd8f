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

Learned reward and termination heads (``dynamics.reward_model = "learned"``; not in the original,
which scores imagined steps with the task's analytic functions, §6): every member gets two more
outputs, the normalised reward ``(r - μ_r) / (σ_r + 1e-10)`` and a termination logit, fitted with
the dynamics on the same rows (targets: the stored ``Transition.reward`` and ``Transition.done``).
A row's loss is then ``mean_d (Δ̂ - Δ)² + (r̂ - r)² + CE(logit, done)`` (normalised units; the
sigmoid cross-entropy has weight 1), and early stopping watches the sum of the three validation
errors. Prediction: ``r = σ_r · r̂ + μ_r``; termination when ``sigmoid(logit) > done_threshold``
(:mod:`bremen_jax.algo.imagine`). Without heads (the default for tasks with analytic functions)
the parameters, the arithmetic and every number are those of the plain ensemble.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from bremen_jax.config import ConfigError, DynamicsConfig, DynamicsHParams
from bremen_jax.models.dynamics_fit import (  # noqa: F401 (compute_normalizer: re-exported)
    DynamicsState, Normalizer, compute_normalizer, fit_dynamics)
from bremen_jax.models.networks import Network, hidden_kernels, make_mlp
from bremen_jax.types import Metrics, Params, PRNGKey, Transition, all_finite, keep_if

# TF1 AdamOptimizer defaults (b1 0.9, b2 0.999, eps 1e-8). TF adds eps to sqrt(v) before the
# bias correction of the step size, optax after it: a relative difference of order 1e-8.
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


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


@dataclasses.dataclass(frozen=True, eq=False)
class Dynamics:
    """Static pieces of the ensemble and its pure functions. Build with :func:`make_dynamics`."""

    obs_dim: int
    act_dim: int
    cfg: DynamicsConfig
    net: Network
    tx: optax.GradientTransformation  # scale_by_adam(ADAM_B*, ADAM_EPS); lr applied in fit

    @property
    def heads(self) -> bool:
        """Whether the members have learned reward and termination heads (2 more outputs)."""
        return self.cfg.reward_model == "learned"

    def targets(self, norm: Normalizer, data: Transition) -> jax.Array:
        """``[C, o]`` normalised delta targets, or ``[C, o + 2]`` with the heads' targets."""
        if self.heads:
            return norm.head_targets(data)
        return norm.targets(data.obs, data.next_obs)

    # ---------------------------------------------------------------- init / predict
    def init(self, key: PRNGKey) -> DynamicsState:
        """Members from independent keys (Glorot-uniform, zero bias); identity normaliser."""
        params = jax.vmap(self.net.init)(jax.random.split(key, self.cfg.num_members))
        opt_state = jax.vmap(self.tx.init)(params)
        o, a = self.obs_dim, self.act_dim
        norm = Normalizer(jnp.zeros(o), jnp.ones(o), jnp.zeros(a), jnp.ones(a),
                          jnp.zeros(o), jnp.ones(o))
        if self.heads:  # the same pytree as after a fit
            norm = norm.replace(reward_mean=jnp.zeros(()), reward_std=jnp.ones(()))
        return DynamicsState(params=params, opt_state=opt_state, norm=norm)

    def _outputs(self, params: Params, norm: Normalizer, obs, action):
        """``(next_obs [..., o], reward [...], done_logit [...])``; the last two ``None``
        without heads."""
        out = self.net.apply(params, norm.inputs(obs, action))
        o, reward, logit = self.obs_dim, None, None
        if self.heads:
            reward = norm.reward_std * out[..., o] + norm.reward_mean
            out, logit = out[..., :o], out[..., o + 1]
        next_obs = obs + norm.delta_std * out + norm.delta_mean
        return jnp.clip(next_obs, -self.cfg.obs_clip, self.cfg.obs_clip), reward, logit

    def _predict(self, params: Params, norm: Normalizer, obs, action):
        return self._outputs(params, norm, obs, action)[0]

    def predict_step(self, state: DynamicsState, obs: jax.Array, action: jax.Array,
                     member: jax.Array) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
        """One member's ``(next_obs [..., o], reward [...], done_logit [...])``.

        ``s' = clip(s + σ_Δ · f(ŝ, â) + μ_Δ, ±obs_clip)``; with heads ``r = σ_r · f_r + μ_r`` and
        the termination logit (``None``, ``None`` without heads). ``action`` is used as given
        (callers clip it to the action bounds first, like the original's model env, §5.1).
        """
        params = jax.tree.map(lambda p: jax.lax.dynamic_index_in_dim(p, member, keepdims=False),
                              state.params)
        return self._outputs(params, state.norm, obs, action)

    def predict(self, state: DynamicsState, obs: jax.Array, action: jax.Array,
                member: jax.Array) -> jax.Array:
        """Next observation from one member: ``[..., o], [..., a], int32 [] -> [..., o]``
        (:meth:`predict_step`'s first output)."""
        return self.predict_step(state, obs, action, member)[0]

    def predict_all_step(self, state: DynamicsState, obs: jax.Array, action: jax.Array):
        """:meth:`predict_step` of every member: leaves with a leading ``[E]`` axis."""
        return jax.vmap(self._outputs, in_axes=(0, None, None, None))(
            state.params, state.norm, obs, action)

    def predict_each_step(self, state: DynamicsState, obs: jax.Array, action: jax.Array):
        """Member ``e`` on its own inputs: ``obs [E, ..., o]``, ``action [E, ..., a]`` ->
        :meth:`predict_step` outputs with a leading ``[E]`` axis (one rollout per member)."""
        return jax.vmap(self._outputs, in_axes=(0, None, 0, 0))(state.params, state.norm, obs,
                                                                action)

    def predict_all(self, state: DynamicsState, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Next observation from every member: ``[..., o], [..., a] -> [E, ..., o]``."""
        return self.predict_all_step(state, obs, action)[0]

    # ---------------------------------------------------------------- losses
    def _head_row_errors(self, pred: jax.Array, y: jax.Array) -> jax.Array:
        """``[..., 4]`` per-row errors with heads: ``Σ_d (Δ̂ - Δ)²``, ``(r̂ - r)²``, the sigmoid
        cross-entropy of the termination logit, and 1 where the thresholded termination is wrong."""
        o = self.obs_dim
        sq = jnp.square(pred[..., :o + 1] - y[..., :o + 1])
        logit, done = pred[..., o + 1], y[..., o + 1]
        ce = optax.sigmoid_binary_cross_entropy(logit, done)
        wrong = (jax.nn.sigmoid(logit) > self.cfg.done_threshold) != (done > 0.5)
        return jnp.stack([jnp.sum(sq[..., :o], -1), sq[..., o], ce, wrong.astype(jnp.float32)], -1)

    def _masked_sums(self, params: Params, x: jax.Array, y: jax.Array, mask: jax.Array):
        """Per-member sums over the ``mask`` rows of the row errors, and the row count ``n``.

        Sums ``[E]`` of ``Σ_d (f(x) - y)²`` (``[E, 4]`` of :meth:`_head_row_errors` with heads).
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
            if self.heads:
                err = self._head_row_errors(pred, y[rows])                      # [E, chunk, 4]
                return total + jnp.sum(jnp.where((pos < n)[:, None], err, 0.0), axis=-2)
            err = jnp.sum(jnp.square(pred - y[rows]), axis=-1)                   # [E, chunk]
            return total + jnp.sum(jnp.where(pos < n, err, 0.0), axis=-1)

        E = self.cfg.num_members
        total = jax.lax.fori_loop(0, (n + chunk - 1) // chunk, body,
                                  jnp.zeros((E, 4) if self.heads else E))
        return total, jnp.maximum(n, 1).astype(jnp.float32)

    def _masked_mse(self, params: Params, x: jax.Array, y: jax.Array,
                    mask: jax.Array) -> jax.Array:
        """Mean over the ``mask`` rows and dims of ``(f(x) - y)²`` per member. -> [E].

        With heads: the early-stopping criterion, the sum of the delta's normalised MSE, the
        reward's normalised MSE and the termination cross-entropy (:meth:`head_errors`).
        """
        total, n = self._masked_sums(params, x, y, mask)
        if self.heads:
            return total[:, 0] / (n * self.obs_dim) + (total[:, 1] + total[:, 2]) / n
        return total / (n * self.obs_dim)

    def head_errors(self, params: Params, x: jax.Array, y: jax.Array,
                    mask: jax.Array) -> Metrics:
        """Validation error of each part (heads only), ``[E]`` each: ``val_obs_nmse``,
        ``val_reward_nmse`` (MSE of the normalised reward: 1 = predicting the mean),
        ``val_done_ce`` (sigmoid cross-entropy) and ``val_done_error`` (fraction of rows whose
        thresholded termination is wrong)."""
        total, n = self._masked_sums(params, x, y, mask)
        return {"val_obs_nmse": total[:, 0] / (n * self.obs_dim),
                "val_reward_nmse": total[:, 1] / n, "val_done_ce": total[:, 2] / n,
                "val_done_error": total[:, 3] / n}

    def val_loss(self, state: DynamicsState, data: Transition, mask: jax.Array) -> jax.Array:
        """Normalised one-step MSE (mean over rows × dims, no L2) of every member. -> [E].

        Args:
            state: uses ``state.norm`` (the statistics of the last fit).
            data: leaves ``[C, ...]``.
            mask: ``[C]`` bool rows to evaluate.
        """
        self._check_data(data, mask, "mask")
        x = state.norm.inputs(data.obs, data.action)
        return self._masked_mse(state.params, x, self.targets(state.norm, data), mask)

    def _member_loss(self, params: Params, x, y, w, l2_coeff):
        """One member: Σ_b w_b · mean_d (f(x_b) - y_b)² + l2_coeff · Σ_hidden ½‖W‖².

        With heads the row term is ``mean_d (Δ̂ - Δ)² + (r̂ - r)² + CE(logit, done)``.
        """
        pred = self.net.apply(params, x)
        if self.heads:
            err = self._head_row_errors(pred, y)
            row = err[..., 0] / self.obs_dim + err[..., 1] + err[..., 2]
        else:
            row = jnp.mean(jnp.square(pred - y), axis=-1)
        mse = jnp.sum(w * row)
        l2 = sum(0.5 * jnp.sum(jnp.square(k)) for k in hidden_kernels(params))
        return mse + l2_coeff * l2, mse

    def _member_step(self, params, opt_state, x, y, w, lr, l2_coeff, run):
        """:meth:`_member_update` without its ``rejected`` flag: ``(params, opt_state, mse)``."""
        return self._member_update(params, opt_state, x, y, w, lr, l2_coeff, run)[:3]

    def _member_update(self, params, opt_state, x, y, w, lr, l2_coeff, run):
        """One Adam step of one member; ``run`` False leaves params and Adam state unchanged.

        A step whose new params or Adam state are not finite is rejected (both kept as they
        were). Returns ``(params, opt_state, mse, rejected)``, ``rejected`` a ``[]`` bool.
        """
        grads, mse = jax.grad(self._member_loss, has_aux=True)(params, x, y, w, l2_coeff)
        _, new_opt = self.tx.update(grads, opt_state, params)   # optax Adam moments
        # Materialise the new moments before the parameter update reads them. Without the
        # barrier XLA re-derives mu/nu inside the parameter-update fusion from the *old* moments,
        # which then have to be copied (2 × 4 MiB per member and step) to allow in-place updates.
        new_opt = jax.lax.optimization_barrier(new_opt)
        new_params = jax.tree.map(lambda p, d: p - lr * d, params, adam_direction(new_opt))
        finite = all_finite((new_params, new_opt))
        keep = run & finite
        return (keep_if(keep, new_params, params), keep_if(keep, new_opt, opt_state), mse,
                run & ~finite)

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
            ``n_train`` / ``n_val`` int32 rows (``n_val``: rows used by early stopping),
            ``nonfinite_steps`` int32 member steps rejected for a non-finite result.
        """
        self._check_data(data, train_mask, "train_mask")
        self._check_data(data, val_mask, "val_mask")
        return fit_dynamics(self, state, data, train_mask, val_mask, hp, key)


def make_dynamics(obs_dim: int, act_dim: int, cfg: DynamicsConfig = DynamicsConfig()) -> Dynamics:
    """Builds the ensemble's static pieces for ``obs_dim``/``act_dim`` (see :class:`Dynamics`)."""
    if not isinstance(obs_dim, int) or obs_dim <= 0:
        raise ValueError(f"obs_dim: expected a positive int, got {obs_dim!r}")
    if not isinstance(act_dim, int) or act_dim <= 0:
        raise ValueError(f"act_dim: expected a positive int, got {act_dim!r}")
    if not isinstance(cfg, DynamicsConfig):
        raise ValueError(f"cfg: expected a DynamicsConfig, got {type(cfg).__name__}")
    heads = 2 if cfg.reward_model == "learned" else 0   # reward, termination logit
    net = make_mlp(obs_dim + act_dim, cfg.hidden_sizes, obs_dim + heads, activation=cfg.activation,
                   precision=cfg.precision)
    tx = optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)
    return Dynamics(obs_dim=obs_dim, act_dim=act_dim, cfg=cfg, net=net, tx=tx)


def resolve_reward_model(cfg: DynamicsConfig, analytic: bool, task: str = "this task"
                         ) -> DynamicsConfig:
    """``cfg`` with ``reward_model`` ``"auto"`` resolved for a task with (``analytic``) or without
    analytic ``reward_fn``/``done_fn``: ``"analytic"`` or ``"learned"``.

    Raises:
        ConfigError: ``reward_model="analytic"`` for a task without analytic functions.
    """
    if cfg.reward_model == "auto":
        return dataclasses.replace(cfg, reward_model="analytic" if analytic else "learned")
    if cfg.reward_model == "analytic" and not analytic:
        raise ConfigError(f"task {task!r} has no analytic reward_fn/done_fn; set "
                          f"dynamics.reward_model to 'learned' or 'auto'")
    return cfg
