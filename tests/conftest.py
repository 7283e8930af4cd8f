"""Test set-up: CPU only, float32, and a persistent compilation cache.

Brax environments take 10-30 s to compile on CPU; several tests build the same programs, and a
persistent cache (keyed by the program) lets later tests and later runs reuse them.
"""

import json
import os
import pathlib

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The fast compile effort's XLA options for every program the tests compile (the package's
# own and the ones tests jit themselves): LLVM -O0 and XLA:CPU's elementwise emitters instead of
# its fusion emitters (bremen_jax.run.compile.COMPILE_EFFORTS["fast"]), about half the compile
# of XLA's defaults (test config: collect 8.5 -> 2.5 s, evaluate 7.8 -> 2.5 s), the same numbers
# up to float rounding; the suite is mostly compilation. BREMEN_TEST_XLA_DEFAULTS=1 runs it with
# XLA's own defaults. Subprocesses inherit it. tests/test_run.py compares the host and compiled
# drivers under explicit options of its own (see there).
_FAST_XLA = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
if not os.environ.get("BREMEN_TEST_XLA_DEFAULTS") and \
        "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAST_XLA).strip()

import jax  # noqa: E402

# XLA's own LLVM -O3 for the few tests whose time is running rather than compiling: at -O0 Brax
# steps run up to ~4x slower (20K random halfcheetah steps, generalized backend: 31 s against
# 6.8 s, for 5 s more compile). Per program, through ``compiler_options``, over the flags above.
OPTIMIZED = {"xla_backend_optimization_level": 3}

jax.config.update("jax_enable_x64", False)
_CACHE = pathlib.Path(os.environ.get("BREMEN_TEST_JAX_CACHE",
                                     pathlib.Path(__file__).resolve().parent.parent
                                     / ".pytest_cache" / "jax"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# BREMEN_TEST_COMPILE_LOG=FILE: every XLA compile of the suite (program name, seconds, the test
# that caused it) appended to FILE.<pid> as JSON lines, one file per xdist worker; summarised by
# ``python -m benchmarks.suite_compiles FILE``: where the suite's compile time goes.
_COMPILE_LOG = {"test": None, "file": None}


def _log_compile(name, secs, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration" and _COMPILE_LOG["file"]:
        _COMPILE_LOG["file"].write(json.dumps({"test": _COMPILE_LOG["test"], "seconds": secs,
                                               "program": str(kwargs.get("fun_name"))}) + "\n")
        _COMPILE_LOG["file"].flush()


if os.environ.get("BREMEN_TEST_COMPILE_LOG"):
    import jax.monitoring  # noqa: E402

    _COMPILE_LOG["file"] = open(f"{os.environ['BREMEN_TEST_COMPILE_LOG']}.{os.getpid()}", "a")
    jax.monitoring.register_event_duration_secs_listener(_log_compile)


def pytest_runtest_setup(item):
    _COMPILE_LOG["test"] = item.nodeid


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


@pytest.fixture
def optimized():
    """``optimized(fn, *args)``: ``fn`` jitted and compiled for ``args`` at :data:`OPTIMIZED`
    (also ``optimized.options``, for a compile effort)."""
    def compile_(fn, *args):
        return jax.jit(fn).lower(*args).compile(OPTIMIZED)
    compile_.options = dict(OPTIMIZED)
    return compile_
