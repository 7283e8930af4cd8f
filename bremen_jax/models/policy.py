"""Gaussian MLP policy with a running observation normaliser (BREMEN §3, §4).

The behaviour-cloned policy and the TRPO target policy share this class, as in the
original (``model/policies.py:11-59``):

* network ``obs_hat -> 200 ReLU -> 200 ReLU -> 2*act_dim`` (linear output);
* head: ``mean = tanh(h_mu)`` (actions live in ``[-1, 1]``) and
  ``log_std = -5 + 2.5 * (tanh(h_sigma) + 1)`` in ``[-5, 0]``; the first ``act_dim``
  outputs are ``h_mu``, the last ``act_dim`` are ``h_sigma`` (``tf.split(out, 2)``);
* "normc" init: Gaussian columns rescaled to unit norm (output layer 0.01), zero
  biases. The original draws every layer from a fresh ``np.random.RandomState(1234)``
  (``libs/misc/tf_networks.py:19-23``), so the initial weights are identical in every
  run. With ``PolicyConfig.init_seed`` set we reproduce that draw exactly with NumPy
  (the weights are compile-time constants); with ``init_seed=None`` the key passed to
  ``init`` is used instead;
* observations are normalised by cumulative running statistics with
  ``std = sqrt(max(var, 1e-2) + 1e-6)`` (``libs/misc/misc_utils.py:76-128``).

Network parameters are those of the library's one MLP (:mod:`bremen_jax.models.networks`):
``{"params": {"hidden_i": {"kernel": [in, out], "bias": [out]}, "output": …}}``.
TRPO differentiates :func:`dist_net` w.r.t. the network parameters only, with the
observation normaliser held fixed.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bremen_jax.models.networks import apply_mlp, check_mlp_sizes, init_normc
from bremen_jax.types import Params, PolicyFn, PRNGKey

LOG_STD_MIN = -5.0
LOG_STD_MAX = 0.0
VAR_FLOOR = 1e-2  # std >= 0.1 (original RunningStats)
STD_EPS = 1e-6


# --------------------------------------------------------------------------------------
# Observation normaliser.
# --------------------------------------------------------------------------------------


@flax.struct.dataclass
class ObsNormalizer:
    """Cumulative running statistics of observations (original ``RunningStats``).

    Attributes:
        count: ``[]`` float32 number of rows merged so far (float so that the merge is
            exact up to 2**24 rows and needs no casts).
        mean: ``[obs_dim]`` float32 running mean.
        var: ``[obs_dim]`` float32 running population variance (divides by ``count``).

    Before any data has been merged (``count == 0``) the normaliser is the exact
    identity (mean 0, std 1), as the original's initial ``mean=0, std=1``.
    """

    count: jax.Array
    mean: jax.Array
    var: jax.Array

    @property
    def std(self) -> jax.Array:
        return normalizer_std(self)


def init_normalizer(obs_dim: int) -> ObsNormalizer:
    """Empty normaliser: ``count=0, mean=0, var=1``; it normalises as the identity."""
    if int(obs_dim) <= 0:
        raise ValueError(f"obs_dim must be a positive int, got {obs_dim!r}")
    return ObsNormalizer(
        count=jnp.zeros((), jnp.float32),
        mean=jnp.zeros((obs_dim,), jnp.float32),
        var=jnp.ones((obs_dim,), jnp.float32),
    )


def normalizer_std(norm: ObsNormalizer) -> jax.Array:
    """``[obs_dim]`` std ``sqrt(max(var, 1e-2) + 1e-6)``; exactly 1 while ``count == 0``."""
    std = jnp.sqrt(jnp.maximum(norm.var, VAR_FLOOR) + STD_EPS)
    return jnp.where(norm.count > 0, std, jnp.ones_like(std))


def update_normalizer(
    norm: ObsNormalizer, obs: jax.Array, mask: Optional[jax.Array] = None
) -> ObsNormalizer:
    """Merge the masked rows of ``obs`` into the running statistics.

    Uses the parallel (Chan et al.) mean/variance merge, which equals the original's
    ``sum``/``square_sum`` accumulation in exact arithmetic but is stable in float32.

    Args:
        norm: current statistics.
        obs: ``[..., obs_dim]`` observations.
        mask: ``[...]`` bool, rows to include (all rows when ``None``).

    Returns:
        The merged normaliser; unchanged when the mask selects no row.
    """
    obs_dim = norm.mean.shape[-1]
    if obs.shape[-1] != obs_dim:
        raise ValueError(f"obs: expected last dim {obs_dim}, got shape {obs.shape}")
    obs = jnp.reshape(obs, (-1, obs_dim)).astype(jnp.float32)
    if mask is None:
        m = jnp.ones((obs.shape[0],), jnp.float32)
    else:
        if mask.size != obs.shape[0]:
            raise ValueError(
                f"mask: expected {obs.shape[0]} entries matching obs rows, got shape "
                f"{mask.shape}")
        m = jnp.reshape(mask, (-1,)).astype(jnp.float32)
    n_b = jnp.sum(m)
    safe_n_b = jnp.maximum(n_b, 1.0)
    mean_b = jnp.sum(m[:, None] * obs, axis=0) / safe_n_b
    var_b = jnp.sum(m[:, None] * jnp.square(obs - mean_b), axis=0) / safe_n_b

    n = norm.count + n_b
    safe_n = jnp.maximum(n, 1.0)
    delta = mean_b - norm.mean
    new_mean = norm.mean + delta * (n_b / safe_n)
    m2 = (norm.var * norm.count + var_b * n_b
          + jnp.square(delta) * (norm.count * n_b / safe_n))
    new_var = m2 / safe_n
    has_new = n_b > 0
    return ObsNormalizer(
        count=n,
        mean=jnp.where(has_new, new_mean, norm.mean),
        var=jnp.where(has_new, new_var, norm.var),
    )


def normalize(norm: ObsNormalizer, obs: jax.Array) -> jax.Array:
    """``[..., obs_dim] -> [..., obs_dim]``: ``(obs - mean) / std`` (no clipping)."""
    return (obs - norm.mean) / normalizer_std(norm)


# --------------------------------------------------------------------------------------
# Policy.
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Static policy configuration (§3, §4).

    Attributes:
        obs_dim: observation size.
        act_dim: action size (actions in ``[-1, 1]``).
        hidden_sizes: ReLU hidden layer widths (original ``[200, 200]``).
        init_seed: fixed NumPy seed of the normc init (original 1234: identical initial
            weights in every run); ``None`` draws the init from the key given to
            ``Policy.init``.
    """

    obs_dim: int
    act_dim: int
    hidden_sizes: Tuple[int, ...] = (200, 200)
    init_seed: Optional[int] = 1234

    def __post_init__(self):
        hidden = check_mlp_sizes("PolicyConfig", self.hidden_sizes, obs_dim=self.obs_dim,
                                 act_dim=self.act_dim)
        object.__setattr__(self, "hidden_sizes", hidden)
        if self.init_seed is not None and (
                not isinstance(self.init_seed, (int, np.integer))
                or not 0 <= self.init_seed < 2**32):
            raise ValueError("PolicyConfig.init_seed must be None or an int in "
                             f"[0, 2**32), got {self.init_seed!r}")


@flax.struct.dataclass
class PolicyParams:
    """Policy parameters: ``net`` (trained) and ``obs_norm`` (running statistics)."""

    net: Params
    obs_norm: ObsNormalizer


def head(out: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Network output ``[..., 2a]`` -> ``(mean [..., a] in [-1,1], log_std in [-5,0])``."""
    h_mu, h_sigma = jnp.split(out, 2, axis=-1)
    mean = jnp.tanh(h_mu)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(h_sigma) + 1.0)
    return mean, log_std


def dist_normalized(net: Params, obs_hat: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Gaussian of the policy from normalised observations ``[..., o]`` (the ReLU MLP + head).

    Returns:
        ``(mean [..., a], log_std [..., a])``.
    """
    return head(apply_mlp(net, obs_hat, "relu"))


def dist_net(net: Params, obs_norm: ObsNormalizer,
             obs: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Gaussian of the policy from raw observations ``[..., o]``.

    Differentiate w.r.t. ``net`` only (TRPO); ``obs_norm`` is treated as data.

    Returns:
        ``(mean [..., a], log_std [..., a])``.
    """
    return dist_normalized(net, normalize(obs_norm, obs))


@dataclasses.dataclass(frozen=True, eq=False)
class Policy:
    """Pure functions of the BREMEN policy; build with :func:`make_policy`."""

    cfg: PolicyConfig

    @property
    def layer_sizes(self) -> Tuple[int, ...]:
        return (self.cfg.obs_dim, *self.cfg.hidden_sizes, 2 * self.cfg.act_dim)

    def init_net(self, key: PRNGKey) -> Params:
        """Normc network parameters (identical for every key if ``init_seed`` is set)."""
        return init_normc(key, self.layer_sizes, self.cfg.init_seed, output_std=0.01)

    def init(self, key: PRNGKey) -> PolicyParams:
        """Fresh parameters: normc net and an empty (identity) normaliser."""
        return PolicyParams(net=self.init_net(key),
                            obs_norm=init_normalizer(self.cfg.obs_dim))

    def _check_obs(self, obs: jax.Array) -> None:
        if obs.ndim < 1 or obs.shape[-1] != self.cfg.obs_dim:
            raise ValueError(
                f"obs: expected shape [..., {self.cfg.obs_dim}], got {obs.shape}")

    def dist(self, params: PolicyParams,
             obs: jax.Array) -> Tuple[jax.Array, jax.Array]:
        """``obs [..., o] -> (mean [..., a], log_std [..., a])``."""
        self._check_obs(obs)
        return dist_net(params.net, params.obs_norm, obs)

    def act_deterministic(self, params: PolicyParams, obs: jax.Array,
                          key: Optional[PRNGKey] = None) -> jax.Array:
        """Mean action ``[..., a]`` (evaluation, §4); ``key`` is unused."""
        del key
        return self.dist(params, obs)[0]

    def act_explore(self, params: PolicyParams, obs: jax.Array, key: PRNGKey,
                    sigma: float | jax.Array = 0.1) -> jax.Array:
        """"Constant sampling" ``mean + sigma * N(0, I)`` (``--const_sampling``, §4).

        The learned std is ignored, as in the original; ``sigma`` may be traced.
        """
        mean = self.dist(params, obs)[0]
        return mean + sigma * jax.random.normal(key, mean.shape, mean.dtype)

    def act_sample(self, params: PolicyParams, obs: jax.Array, key: PRNGKey,
                   scale: float | jax.Array = 1.0) -> jax.Array:
        """``mean + scale * exp(log_std) * N(0, I)`` (no ``--const_sampling``, §4)."""
        mean, log_std = self.dist(params, obs)
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        return mean + scale * jnp.exp(log_std) * eps


def make_policy(cfg: PolicyConfig) -> Policy:
    """Build the policy functions for a static configuration."""
    if not isinstance(cfg, PolicyConfig):
        raise ValueError(f"cfg must be a PolicyConfig, got {type(cfg).__name__}")
    return Policy(cfg)


POLICY_MODES = ("deterministic", "explore", "sample")


def make_policy_fn(policy: Policy, mode: str,
                   sigma: float | jax.Array = 0.1) -> PolicyFn:
    """A :data:`PolicyFn` ``fn(params, obs, key) -> action``.

    Args:
        policy: the policy.
        mode: ``"deterministic"`` (mean), ``"explore"`` (``mean + sigma * eps``, the
            README setting ``--gaussian 0.1 --const_sampling``) or ``"sample"``
            (``mean + sigma * std * eps``; the original uses the same ``--gaussian``
            factor for both sampling modes).
        sigma: the original's ``--gaussian`` value; baked into the returned function.

    Raises:
        ValueError: for an unknown mode.
    """
    if mode == "deterministic":
        return policy.act_deterministic
    if mode == "explore":
        return functools.partial(_explore, policy, sigma=sigma)
    if mode == "sample":
        return functools.partial(_sample, policy, scale=sigma)
    raise ValueError(f"mode must be one of {POLICY_MODES}, got {mode!r}")


def _explore(policy: Policy, params: PolicyParams, obs: jax.Array, key: PRNGKey,
             sigma: float | jax.Array) -> jax.Array:
    return policy.act_explore(params, obs, key, sigma)


def _sample(policy: Policy, params: PolicyParams, obs: jax.Array, key: PRNGKey,
            scale: float | jax.Array) -> jax.Array:
    return policy.act_sample(params, obs, key, scale)
