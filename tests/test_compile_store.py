"""Stored executables (run/compile.py, ``persist=True``): a second process loads the program
without tracing it, gets the same numbers, and survives LAPACK kernels (QR, triangular solve)
that only lowering used to initialise."""

import json
import os
import subprocess
import sys

_SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from bremen_jax.run import compile as c

jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # JAX's cache keeps it too
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
traces = []

def fn(x, k):
    traces.append(1)
    r = jnp.linalg.qr(x, mode="r")
    k1, k2 = jax.random.split(k)  # slices of a key: what broke when re-serialized (see below)
    y = jax.random.normal(k1, (8, 4)) @ r
    return (jax.scipy.linalg.solve_triangular(r, x.T @ jnp.ones(6), lower=False),
            jnp.concatenate([y[:, :2].ravel(), jax.random.uniform(k2, (2,))]))

x = jnp.arange(24.0).reshape(6, 4) ** 0.5 + jnp.eye(6, 4)
k = jax.random.key(0)
exe = c.compile_cached(("qr", 1), fn, x, k, persist=sys.argv[2] == "1")
out = [np.asarray(o).tolist() for o in exe.fn(x, k)]
print(json.dumps({"traces": len(traces), "out": out}))
"""


def _run(cache, persist="1"):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", _SCRIPT, str(cache), persist], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_second_process_loads_without_tracing_and_gets_the_same_numbers(tmp_path):
    first = _run(tmp_path)
    stored = list((tmp_path / "bremen_executables").glob("*.pkl"))
    assert first["traces"] == 1 and len(stored) == 1
    second = _run(tmp_path)
    assert second["traces"] == 0            # loaded: not traced, not lowered
    assert second["out"] == first["out"]    # bit for bit (JSON floats round-trip exactly)
    assert len(list((tmp_path / "bremen_executables").glob("*.pkl"))) == 1


def test_without_persist_nothing_is_stored_and_a_damaged_entry_is_rebuilt(tmp_path):
    assert _run(tmp_path / "a", persist="0")["traces"] == 1
    assert not (tmp_path / "a" / "bremen_executables").exists()
    first = _run(tmp_path / "b")
    (entry,) = (tmp_path / "b" / "bremen_executables").glob("*.pkl")
    entry.write_bytes(b"not a pickle")
    again = _run(tmp_path / "b")
    assert again["traces"] == 1 and again["out"] == first["out"]


def test_a_program_from_jax_cache_is_not_stored(tmp_path):
    """An executable JAX's persistent cache answered with serializes into one that fails when
    called ("Function slice_bitcast_fusion.3 not found"; what broke CI): it is used, not stored."""
    first = _run(tmp_path, persist="0")     # XLA compiles it; JAX's cache keeps it
    second = _run(tmp_path)                 # JAX's cache answers: used, not stored
    assert second["out"] == first["out"]
    assert not list((tmp_path / "bremen_executables").glob("*.pkl"))
    third = _run(tmp_path)
    assert third["out"] == first["out"]


def test_fast_compile_passes_o0_keeps_numbers_and_its_own_cache_entry(monkeypatch,
                                                                      compile_options_seen):
    """``BREMEN_JAX_COMPILE=fast`` compiles with ``xla_backend_optimization_level=0`` and without
    XLA:CPU's fusion emitters (a cache
    entry of its own), same numbers; an unknown value is a one-line error; ``--fast-compile``
    sets it."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import pytest

    from bremen_jax import cli
    from bremen_jax.run import compile as c

    seen = compile_options_seen

    def fn(x):
        return jnp.tanh(x) @ x.T @ x + jnp.cumsum(x, axis=1)

    x = jnp.arange(12.0).reshape(3, 4) / 7
    monkeypatch.delenv("BREMEN_JAX_COMPILE", raising=False)
    default = c.compile_cached(("effort-test",), fn, x)
    monkeypatch.setenv("BREMEN_JAX_COMPILE", "fast")
    fast = c.compile_cached(("effort-test",), fn, x)
    assert not fast.cached and seen == [None, {"xla_backend_optimization_level": 0,
                                               "xla_cpu_use_fusion_emitters": False}]
    np.testing.assert_allclose(fast.fn(x), default.fn(x), rtol=1e-6)
    assert c.compile_cached(("effort-test",), fn, x).cached
    # The config's effort is used unless BREMEN_JAX_COMPILE says otherwise.
    monkeypatch.setenv("BREMEN_JAX_COMPILE", "default")
    assert c.compile_cached(("effort-test",), fn, x, effort="fast").cached   # = the default one
    monkeypatch.delenv("BREMEN_JAX_COMPILE")
    assert c.compile_cached(("effort-test",), fn, x, effort="fast").cached   # = the fast one
    assert len(seen) == 2
    monkeypatch.setenv("BREMEN_JAX_COMPILE", "slow")
    with pytest.raises(ValueError, match="BREMEN_JAX_COMPILE='slow': expected one of default, "
                                         "fast"):
        c.compile_cached(("effort-test",), fn, x)
    monkeypatch.delenv("BREMEN_JAX_COMPILE")
    assert cli.main(["train", "--fast-compile", "--config", "no_such_config"]) == 2
    assert os.environ["BREMEN_JAX_COMPILE"] == "fast"   # (monkeypatch restores it)
