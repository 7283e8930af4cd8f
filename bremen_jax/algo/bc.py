"""Behaviour cloning of the data-collection policy (BREMEN §3).

One ``fit`` call does what the original does before every offline phase
(``recursive.py:239-242``, ``model/policies.py:136-168``):

1. merge the masked rows' observations into the *cumulative* observation normaliser;
2. re-initialise the network (``BCConfig.reinit``; the normc init uses the fixed seed, so
   every deployment starts from the same weights) while keeping the Adam state
   (``BCConfig.reset_optimizer=False``: the original's Adam reset op is empty);
3. ``num_steps`` Adam steps (one ``lax.scan``) on the loss
   ``mean_{batch, dims} (mu + sigma * eps - a)^2`` with a reparameterised sample.

The target policy is then simply a copy of the returned ``state.params`` (``--bc_init``,
§4), normaliser included.

Minibatches: each step draws ``batch_size`` rows uniformly *with replacement* from the
masked rows (one stable ``argsort`` of the mask per fit gives the valid-row table).
The original iterates epochs of shuffled data and drops the last partial batch; with
300K steps x 256 rows over ~200K rows (~384 epochs) both give every row the same
expected weight, and sampling keeps the scan free of data-dependent epoch boundaries,
which would need a ``lax.cond`` (turned into a per-step sort under ``vmap``). This is a
deliberate, documented deviation.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from bremen_jax.config import BCConfig, BCHParams
from bremen_jax.models.policy import (Policy, PolicyParams, dist_normalized, normalize,
                                      update_normalizer)
from bremen_jax.types import Metrics, Params, PRNGKey, Transition, all_finite, keep_if

CURVE_POINTS = 20  # segments of the loss curve reported in the metrics


@flax.struct.dataclass
class BCState:
    """BC state: cloned policy parameters, Adam state of ``params.net``, total steps."""

    params: PolicyParams
    opt_state: optax.OptState
    step: jax.Array  # [] int32, Adam steps taken over all fits


def bc_loss(net: Params, obs_hat: jax.Array, action: jax.Array,
            key: PRNGKey) -> Tuple[jax.Array, Tuple[jax.Array, jax.Array]]:
    """Reparameterised-sample MSE (``model/policies.py:136-141``).

    Args:
        net: network parameters (differentiated).
        obs_hat: ``[B, o]`` normalised observations.
        action: ``[B, a]`` dataset actions.
        key: noise for ``eps ~ N(0, I)``.

    Returns:
        ``(loss, (mean_mse, mean_std))``: the loss, ``mean (mu - a)^2`` and
        ``mean exp(log_std)`` (for monitoring).
    """
    mean, log_std = dist_normalized(net, obs_hat)
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    loss = jnp.mean(jnp.square(mean + std * eps - action))
    return loss, (jnp.mean(jnp.square(mean - action)), jnp.mean(std))


def _segment_means(x: jax.Array, num_points: int) -> jax.Array:
    """``[T] -> [num_points]`` means of equal consecutive segments (tail dropped)."""
    seg = x.shape[0] // num_points
    return jnp.mean(jnp.reshape(x[:seg * num_points], (num_points, seg)), axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class BC:
    """Pure behaviour-cloning functions; build with :func:`make_bc`."""

    policy: Policy
    cfg: BCConfig

    @property
    def optimizer(self) -> optax.GradientTransformation:
        # The learning rate is applied outside so that it stays a traced HParam.
        return optax.scale_by_adam()

    def init(self, key: PRNGKey) -> BCState:
        """Fresh normc policy, empty normaliser, fresh Adam state."""
        params = self.policy.init(key)
        return BCState(params=params, opt_state=self.optimizer.init(params.net),
                       step=jnp.zeros((), jnp.int32))

    def _check(self, data: Transition, mask: jax.Array) -> None:
        cfg = self.policy.cfg
        if data.obs.ndim != 2 or data.obs.shape[1] != cfg.obs_dim:
            raise ValueError(f"data.obs: expected shape [C, {cfg.obs_dim}], got "
                             f"{data.obs.shape}")
        capacity = data.obs.shape[0]
        if data.action.shape != (capacity, cfg.act_dim):
            raise ValueError(f"data.action: expected shape [{capacity}, {cfg.act_dim}], "
                             f"got {data.action.shape}")
        if mask.shape != (capacity,):
            raise ValueError(f"mask: expected shape [{capacity}], got {mask.shape}")

    def fit(self, state: BCState, data: Transition, mask: jax.Array, hp: BCHParams,
            key: PRNGKey) -> Tuple[BCState, Metrics]:
        """Clone the policy that produced the masked rows of ``data``.

        Args:
            state: previous BC state (normaliser and Adam state carry over).
            data: ``Transition`` with leaves ``[C, ...]``; only ``obs`` and ``action``
                are read.
            mask: ``[C]`` bool, rows to clone (e.g. the latest deployment's batch).
            hp: traced hyperparameters.
            key: PRNG key (re-init when ``init_seed is None``, minibatches, noise).

        Returns:
            ``(state, metrics)``. With an empty mask the state is returned unchanged
            and every metric but ``num_samples`` is 0.
            Metrics (float32 scalars unless noted): ``loss`` (mean over the last 1% of
            steps), ``loss_initial`` (first 1%), ``loss_curve`` ``[<=20]`` (segment
            means), ``action_mse`` and ``std_mean`` (last 1% of steps: ``(mu-a)^2`` and
            ``exp(log_std)``), ``num_samples``, ``nonfinite_steps`` (int32: Adam steps whose
            new params or Adam state were not finite; they are rejected, the step keeps both).
        """
        self._check(data, mask)
        cfg = self.cfg
        key_init, key_loop = jax.random.split(key)
        mask = mask.astype(bool)
        n = jnp.sum(mask.astype(jnp.int32))

        obs_norm = update_normalizer(state.params.obs_norm, data.obs, mask)
        net = self.policy.init_net(key_init) if cfg.reinit else state.params.net
        opt_state = self.optimizer.init(net) if cfg.reset_optimizer else state.opt_state

        # Normalise once with the updated statistics (fixed during the fit).
        obs_hat = normalize(obs_norm, data.obs.astype(jnp.float32))
        action = data.action.astype(jnp.float32)
        valid_rows = jnp.argsort(~mask, stable=True)  # masked rows first
        lr = hp.learning_rate
        grad_fn = jax.value_and_grad(bc_loss, has_aux=True)

        def step_fn(carry, i):
            net, opt_state = carry
            key_idx, key_eps = jax.random.split(jax.random.fold_in(key_loop, i))
            j = jax.random.randint(key_idx, (cfg.batch_size,), 0, jnp.maximum(n, 1))
            rows = valid_rows[j]
            (loss, (mse, std)), grads = grad_fn(net, obs_hat[rows], action[rows],
                                                key_eps)
            updates, new_opt = self.optimizer.update(grads, opt_state, net)
            new_net = jax.tree.map(lambda p, u: p - lr * u, net, updates)
            ok = all_finite((new_net, new_opt))  # else rejected: net and Adam state kept
            return (keep_if(ok, new_net, net), keep_if(ok, new_opt, opt_state)), \
                (loss, mse, std, ~ok)

        (net, opt_state), (losses, mses, stds, rejected) = jax.lax.scan(
            step_fn, (net, opt_state), jnp.arange(cfg.num_steps, dtype=jnp.int32))

        new_state = BCState(params=PolicyParams(net=net, obs_norm=obs_norm),
                            opt_state=opt_state, step=state.step + cfg.num_steps)
        has_data = n > 0
        new_state = jax.tree.map(lambda a, b: jnp.where(has_data, a, b), new_state,
                                 state)

        tail = max(1, cfg.num_steps // 100)
        metrics = {
            "loss": jnp.mean(losses[-tail:]),
            "loss_initial": jnp.mean(losses[:tail]),
            "loss_curve": _segment_means(losses, min(CURVE_POINTS, cfg.num_steps)),
            "action_mse": jnp.mean(mses[-tail:]),
            "std_mean": jnp.mean(stds[-tail:]),
        }
        metrics = jax.tree.map(lambda x: jnp.where(has_data, x, 0.0), metrics)
        metrics["num_samples"] = n.astype(jnp.float32)
        metrics["nonfinite_steps"] = jnp.where(has_data, jnp.sum(rejected.astype(jnp.int32)), 0)
        return new_state, metrics


def make_bc(policy: Policy, cfg: BCConfig = BCConfig()) -> BC:
    """Build the BC functions for a policy and a static configuration."""
    if not isinstance(policy, Policy):
        raise ValueError(f"policy must be a Policy, got {type(policy).__name__}")
    if not isinstance(cfg, BCConfig):
        raise ValueError(f"cfg must be a BCConfig, got {type(cfg).__name__}")
    return BC(policy=policy, cfg=cfg)
