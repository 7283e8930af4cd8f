"""Test set-up: CPU only, float32, and a persistent compilation cache.

Brax environments take 10-30 s to compile on CPU; several tests build the same programs, and a
persistent cache (keyed by the program) lets later tests and later runs reuse them.
"""

import os
import pathlib

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA:CPU's elementwise emitters instead of its fusion emitters: about 30% less compile for the
# programs the tests jit themselves (collect 8.5 -> 6.0 s, evaluate 7.8 -> 4.6 s on the test
# config), the same numbers up to float rounding, steps as fast or faster. The suite is mostly
# compilation. BREMEN_TEST_XLA_DEFAULTS=1 runs it with XLA's own defaults. Subprocesses inherit it.
if not os.environ.get("BREMEN_TEST_XLA_DEFAULTS") and \
        "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_use_fusion_emitters=false").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)
_CACHE = pathlib.Path(os.environ.get("BREMEN_TEST_JAX_CACHE",
                                     pathlib.Path(__file__).resolve().parent.parent
                                     / ".pytest_cache" / "jax"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@pytest.fixture(autouse=True)
def _restore_task_registry():
    """Tasks a test registers (``register_task``) do not leak into later tests of the same
    worker (error messages list the registered tasks)."""
    import bremen_jax.envs  # noqa: F401  (registers the built-in tasks)
    from bremen_jax.envs import registry

    saved = dict(registry._REGISTRY), dict(registry._SPECS)
    yield
    for current, before in zip((registry._REGISTRY, registry._SPECS), saved):
        current.clear()
        current.update(before)


@pytest.fixture
def compile_options_seen(monkeypatch):
    """The ``compiler_options`` of every ``Lowered.compile`` call during the test, in order."""
    seen = []
    real = jax.stages.Lowered.compile

    def spy(self, compiler_options=None, **kw):
        seen.append(compiler_options)
        return real(self, compiler_options, **kw)

    monkeypatch.setattr(jax.stages.Lowered, "compile", spy)
    return seen
