"""Test set-up: CPU only, float32, and a persistent compilation cache.

Brax environments take 10-30 s to compile on CPU; several tests build the same programs, and a
persistent cache (keyed by the program) lets later tests and later runs reuse them.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)
_CACHE = pathlib.Path(os.environ.get("BREMEN_TEST_JAX_CACHE",
                                     pathlib.Path(__file__).resolve().parent.parent
                                     / ".pytest_cache" / "jax"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
