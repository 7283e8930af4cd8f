"""Shared small types: the transition record, type aliases, the positive-int check and the
non-finite guard (:func:`all_finite`, :func:`keep_if`).

Everything that flows between modules (collection -> buffer -> ensemble fit / behaviour
cloning -> imagined rollouts) is a :class:`Transition` pytree whose leaves share leading
batch axes.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import flax.struct
import jax
import jax.numpy as jnp

PRNGKey = jax.Array  # a typed key from ``jax.random.key`` (shape ``()``)
Params = Any  # a pytree of arrays
Metrics = Dict[str, jax.Array]

# ``policy_fn(params, obs[obs_dim], key) -> action[act_dim]``; pure, single observation.
PolicyFn = Callable[[Params, jax.Array, PRNGKey], jax.Array]


def check_positive_int(value: Any, field: str) -> int:
    """``value`` if it is a positive Python int (not a bool); else ValueError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field} must be a positive int, got {value!r}")
    return value


def all_finite(tree: Any) -> jax.Array:
    """``[]`` bool: every element of every floating leaf of ``tree`` is finite (jittable).

    Integer, bool and key leaves count as finite; an empty tree is finite.
    """
    oks = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(oks)) if oks else jnp.bool_(True)


def keep_if(ok: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where the ``[]`` bool ``ok`` holds, else ``old`` (leaf by leaf, branch-free: a
    rejected non-finite ``new`` never leaks into the result)."""
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


@flax.struct.dataclass
class Transition:
    """One environment step, or a batch of them (leaves share leading axes ``[...]``).

    Attributes:
        obs: ``[..., obs_dim]`` float32 observation before the step.
        action: ``[..., act_dim]`` float32 action as sampled (not clipped).
        reward: ``[...]`` float32 task reward ``reward_fn(obs, clip(action), next_obs)``.
        next_obs: ``[..., obs_dim]`` float32 observation after the step (the true
            successor, also when the episode ended; never the reset observation).
        done: ``[...]`` float32, 1.0 where the task's termination fired on ``next_obs``.
        truncation: ``[...]`` float32, 1.0 where the episode was cut by the time limit
            without terminating.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array
    truncation: jax.Array
