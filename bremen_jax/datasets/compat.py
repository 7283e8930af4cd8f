"""Compatibility shims between the pinned Brax and newer JAX releases (one place for all of them).

Why this module exists: brax 0.14.2's ``brax.training.agents.ppo.train.train`` (used by
:func:`bremen_jax.datasets.behavior_training.train_behavior` to train the behaviour policies)
calls ``jax.device_put_replicated``, which jax 0.10 removed. :func:`brax_jax_compat` provides
JAX's documented drop-in (``jax.device_put`` of a stacked copy with a sharding over the devices)
for the duration of the call only, and leaves ``jax`` untouched when the function exists.
Delete this module once the Brax pin no longer calls the removed function.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def device_put_replicated(x: Any, devices: Sequence[jax.Device]) -> Any:
    """``jax.device_put_replicated`` via ``jax.device_put``: every leaf ``a`` becomes
    ``[len(devices), *a.shape]``, one copy per device (sharded along axis 0)."""
    sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), ("devices",)),
                                          jax.sharding.PartitionSpec("devices"))
    return jax.tree.map(
        lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * len(devices)), sharding), x)


@contextlib.contextmanager
def brax_jax_compat():
    """Within the block, ``jax.device_put_replicated`` exists (the shim above if JAX lacks it)."""
    if hasattr(jax, "device_put_replicated"):
        yield
        return
    jax.device_put_replicated = device_put_replicated
    try:
        yield
    finally:
        del jax.device_put_replicated
