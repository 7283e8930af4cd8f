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
if sys.argv[3] == "sharded":  # as a sweep: rows split over a mesh of chosen devices
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    mesh = Mesh(np.array(jax.devices()[1:]), ("runs",))  # a sub-mesh: devices 1 and 2 of 3
    rows, whole = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())

    def fn(x, k):  # noqa: F811
        traces.append(1)
        return jnp.tanh(x) @ jax.random.normal(k, (4, 3)), jnp.sum(x ** 2, axis=1)

    x = jnp.arange(8.0 * 4).reshape(8, 4) / 10
    exe = c.compile_cached(("rows", tuple(d.id for d in mesh.devices.flat)), fn, x, k,
                           persist=sys.argv[2] == "1", in_shardings=(rows, whole),
                           out_shardings=rows)
    out = exe.fn(jax.device_put(x, rows), k)
    assert all(o.sharding.device_set == set(jax.devices()[1:]) for o in out)
else:
    exe = c.compile_cached(("qr", 1), fn, x, k, persist=sys.argv[2] == "1")
    out = exe.fn(x, k)
out = [np.asarray(o).tolist() for o in out]
print(json.dumps({"traces": len(traces), "out": out}))
"""


def _run(cache, persist="1", mode="plain", devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if mode == "sharded" or devices > 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                            + f" --xla_force_host_platform_device_count={max(devices, 3)}").strip()
    r = subprocess.run([sys.executable, "-c", _SCRIPT, str(cache), persist, mode], env=env,
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


def test_a_sharded_program_is_stored_and_loads_onto_its_devices(tmp_path):
    """A program with in/out shardings over a mesh of two of three devices (a sweep's, on chosen
    devices) is stored too; a second process loads it untraced onto those two devices (loaded
    onto all three, XLA aborted the process), and its outputs equal the first's."""
    first = _run(tmp_path, mode="sharded")
    assert first["traces"] == 1 and len(list((tmp_path / "bremen_executables").glob("*.pkl"))) == 1
    second = _run(tmp_path, mode="sharded")
    assert second["traces"] == 0 and second["out"] == first["out"]


def test_a_one_device_program_loads_where_there_are_several_devices(tmp_path):
    """On a machine with several devices (a multi-GPU host; here three CPU devices) an unsharded
    program runs on one; loaded onto all of them it failed when called ("Expected args to
    execute_sharded_on_local_devices to have 3 shards"), so it is loaded onto its own."""
    first = _run(tmp_path, devices=3)
    second = _run(tmp_path, devices=3)
    assert (first["traces"], second["traces"]) == (1, 0) and second["out"] == first["out"]


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
    with pytest.raises(ValueError, match="BREMEN_JAX_COMPILE='slow': expected one of auto, "
                                         "default, light, fast"):
        c.compile_cached(("effort-test",), fn, x)
    monkeypatch.delenv("BREMEN_JAX_COMPILE")
    assert cli.main(["train", "--fast-compile", "--config", "no_such_config"]) == 2
    assert os.environ["BREMEN_JAX_COMPILE"] == "fast"   # (monkeypatch restores it)


def test_auto_effort_compiles_physics_programs_light_and_the_rest_at_xla_defaults(
        monkeypatch, compile_options_seen):
    """``compile_effort="auto"`` (the schema's default): a ``kind="env"`` job compiles with the
    light options on CPU, any other job with XLA's own; both give the same numbers up to float
    rounding and have cache entries of their own; an explicit effort or BREMEN_JAX_COMPILE
    applies to both kinds; an unknown kind is refused."""
    import jax.numpy as jnp
    import numpy as np
    import pytest

    from bremen_jax.config import schema
    from bremen_jax.run import compile as c

    monkeypatch.delenv("BREMEN_JAX_COMPILE", raising=False)
    assert schema.SCHEMA["compile_effort"].default == "auto"
    assert c.compile_effort("auto", "env") == "light"
    assert c.compile_effort("auto", "other") == c.compile_effort() == "default"
    assert c.compile_effort("default", "env") == "default"
    assert c.compile_effort("fast", "other") == "fast"
    monkeypatch.setenv("BREMEN_JAX_COMPILE", "light")
    assert c.compile_effort("auto", "other") == c.compile_effort("default", "env") == "light"
    monkeypatch.delenv("BREMEN_JAX_COMPILE")
    with pytest.raises(ValueError, match="job kind must be one of env, other, got 'physics'"):
        c.compile_effort("auto", "physics")

    def fn(x):
        return jnp.sin(x) @ x.T @ x + jnp.cumsum(x, axis=0)

    x = jnp.arange(20.0).reshape(4, 5) / 9
    seen = compile_options_seen
    other = c.compile_cached(("auto-test",), fn, x)
    env = c.compile_cached(("auto-test",), fn, x, kind="env")
    assert not env.cached and seen == [None, {"xla_backend_optimization_level": 1,
                                              "xla_cpu_use_fusion_emitters": False}]
    np.testing.assert_allclose(env.fn(x), other.fn(x), rtol=1e-6)
    assert c.compile_cached(("auto-test",), fn, x, effort="light").cached  # = the env one
    assert c.compile_cached(("auto-test",), fn, x, effort="default", kind="env").cached
    assert len(seen) == 2


def test_host_driver_compiles_collect_and_evaluate_as_physics_programs(monkeypatch):
    """The schedule marks the steps that step the physics (``kind="env"``): collection and
    both evaluations; the host driver passes the kind and the config's effort to each
    program's compile."""
    import jax

    from bremen_jax import config as config_lib
    from bremen_jax.algo.phases import make_phases
    from bremen_jax.algo.schedule import Schedule
    from bremen_jax.run import host

    static, _ = config_lib.split(config_lib.load_config("test"))
    schedule = Schedule(make_phases(static))
    kinds = {(s.name, s.prefix): s.kind for s in schedule.preamble_steps() + schedule.chunk_steps()}
    assert kinds == {("collect", ""): "env", ("fit_dynamics", ""): "other",
                     ("fit_bc", ""): "other", ("evaluate", "bc_"): "env",
                     ("improve", ""): "other", ("evaluate", ""): "env"}
    offline = Schedule(make_phases(static), offline=True)
    assert offline.preamble_steps()[0].kind == "other"  # insert: no physics

    jobs = []
    monkeypatch.setattr(host, "compile_many", lambda js: jobs.extend(js) or [
        type("C", (), {"fn": None, "seconds": 0.0})() for _ in js])
    host.compile_steps(schedule, config_lib.split(config_lib.load_config("test"))[1],
                       (jax.random.key(0),))
    assert {j.key[1]: j.kind for j in jobs} == {"init": "other", "collect": "env",
                                                "fit_dynamics": "other", "fit_bc": "other",
                                                "evaluate": "env", "improve": "other"}
    assert {j.effort for j in jobs} == {"fast"}  # the test config's


def test_effort_options_fit_the_backend_and_an_unknown_option_is_dropped(monkeypatch, capsys):
    """``xla_cpu_*`` options go to the CPU compiler only (the GPU one refuses them: seen on a lent
    H200 with jax 0.11.2, "No such compile option: 'xla_cpu_use_fusion_emitters'"); an option
    the installed XLA does not know is dropped with one line on stderr and the compile retried,
    once: later compiles leave it out from the start."""
    import pytest

    from bremen_jax.run import compile as c

    monkeypatch.setattr(c, "_UNKNOWN_OPTIONS", set())
    assert c.effort_options("fast", "cpu") == {"xla_backend_optimization_level": 0,
                                               "xla_cpu_use_fusion_emitters": False}
    assert c.effort_options("fast", "gpu") == {"xla_backend_optimization_level": 0}
    assert c.effort_options("default", "gpu") == {}

    class Lowered:  # stands in for jax's Lowered: rejects one option, as XLA does
        def __init__(self):
            self.calls = []

        def compile(self, options):
            self.calls.append(options)
            if options and "xla_backend_optimization_level" in options:
                raise RuntimeError("INVALID_ARGUMENT: No such compile option: "
                                   "'xla_backend_optimization_level'")
            return "executable"

    monkeypatch.setattr(c.jax, "default_backend", lambda: "cpu")
    low = Lowered()
    assert c.compile_lowered(low, "fast") == "executable"
    assert low.calls == [{"xla_backend_optimization_level": 0,
                          "xla_cpu_use_fusion_emitters": False},
                         {"xla_cpu_use_fusion_emitters": False}]
    assert "no compile option 'xla_backend_optimization_level'" in capsys.readouterr().err
    low = Lowered()
    assert c.compile_lowered(low, "light") == "executable"
    assert low.calls == [{"xla_cpu_use_fusion_emitters": False}]   # dropped from the start

    class Broken:  # any other compile error is the caller's
        def compile(self, options):
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        c.compile_lowered(Broken(), "fast")


def test_sweep_program_is_stored_for_builtin_tasks_only(monkeypatch):
    """``compile_sweep`` asks for its sharded program to be stored (``persist``) when the task is
    the built-in one of its name (``registry.is_builtin``; a user's task under that name is not),
    and its key names what ``make_phases`` sized besides the static config (buffer capacity,
    segments, task), as the compiled driver's key does."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    from bremen_jax import config as config_lib
    from bremen_jax.algo.phases import make_phases
    from bremen_jax.envs.registry import is_builtin, register_task
    from bremen_jax.sweep import program

    seen = []
    monkeypatch.setattr(program, "compile_cached", lambda key, fn, *args, **kw: seen.append(
        (key, kw)) or type("C", (), {"fn": None, "seconds": 1.0, "cached": False})())
    static, hp = config_lib.split(config_lib.load_config("test"))
    phases = make_phases(static)
    mesh = Mesh(np.array(jax.devices()[:1]), ("runs",))
    program.compile_sweep(phases, mesh, hp, 2)
    (key, kw), = seen
    assert kw["persist"] is True
    assert key[-3:] == (phases.capacity, phases.max_segments, phases.task.name)
    # A user's task registered under the built-in's name: its code is not this package's.
    assert is_builtin(phases.task.name) and not is_builtin("no_such_task")
    register_task(phases.task.name, lambda **kw: phases.task, overwrite=True)
    assert not is_builtin(phases.task.name)
    program.compile_sweep(phases, mesh, hp, 2)
    assert seen[-1][1]["persist"] is False


def test_stored_executables_are_pruned_by_count_and_bytes(tmp_path):
    """The newest are kept while within both the file and the byte budget; the newest always."""
    from bremen_jax.run import compile as c

    for i, size in enumerate([50, 10, 30, 20, 40]):  # a.pkl oldest ... e.pkl newest
        f = tmp_path / f"{'abcde'[i]}.pkl"
        f.write_bytes(b"x" * size)
        os.utime(f, (1000 + i, 1000 + i))
    (tmp_path / "other.txt").write_text("not an executable")
    c.prune_stored(tmp_path, max_files=3, max_bytes=1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pkl", "d.pkl", "e.pkl", "other.txt"]
    c.prune_stored(tmp_path, max_files=3, max_bytes=65)    # e 40 + d 20 = 60; c would be 90
    assert sorted(p.name for p in tmp_path.glob("*.pkl")) == ["d.pkl", "e.pkl"]
    c.prune_stored(tmp_path, max_files=3, max_bytes=1)     # the newest stays, however large
    assert [p.name for p in tmp_path.glob("*.pkl")] == ["e.pkl"]
