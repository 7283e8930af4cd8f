"""The Brax/JAX compatibility shim: ``jax.device_put_replicated`` only inside the block."""

import jax
import jax.numpy as jnp
import numpy as np

from bremen_jax.datasets import compat


def test_device_put_replicated_stacks_one_copy_per_device():
    devices = jax.local_devices()
    out = compat.device_put_replicated({"a": jnp.arange(3.0), "b": 2.0}, devices)
    assert out["a"].shape == (len(devices), 3) and out["b"].shape == (len(devices),)
    np.testing.assert_array_equal(np.asarray(out["a"])[0], [0.0, 1.0, 2.0])


def test_context_restores_jax():
    had = hasattr(jax, "device_put_replicated")
    with compat.brax_jax_compat():
        assert hasattr(jax, "device_put_replicated")
    assert hasattr(jax, "device_put_replicated") == had
