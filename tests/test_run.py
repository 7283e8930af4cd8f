"""The run loop: host driver == compiled driver, interrupted (stop or Ctrl-C) + resumed == whole
run, a finished run resumes without compiling, ``checkpoint.every``, nothing recompiles across
deployments or HParam changes, ``vmap``-able ``train``, the ``bremen train`` command end to end,
and (slow) learning on inverted_pendulum.

Compiling the phases of the tiny ``test`` config takes most of the time (Brax on CPU), so the
executables are shared: the drivers cache them per configuration, and the runs are module fixtures.
"""

import contextlib
import json
import pathlib

import chex
import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases
from bremen_jax.algo.schedule import Schedule, make_train
from bremen_jax.cli import main
from bremen_jax.run import Interrupted, run_compiled, run_host
from bremen_jax.run import compile as compile_lib
from bremen_jax.run import host as host_lib
from bremen_jax.run.checkpoint import Checkpointer
from bremen_jax.run.logs import read_jsonl
from bremen_jax.run.workdir import STREAMS

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
TOL = dict(rtol=1e-4, atol=1e-5)


@contextlib.contextmanager
def count_compiles():
    events = []

    def listener(name, secs, **kwargs):
        if name == COMPILE_EVENT:
            events.append(secs)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture(autouse=True, scope="module")
def _default_effort_with_fusion_emitters():
    """This module's runs compile at the ``default`` effort with XLA:CPU's fusion emitters on
    (the conftest turns them off for the suite), i.e. -O0 with fusion emitters: the host and
    compiled drivers split the same computation into different programs, and under the fast
    effort (-O0 without fusion emitters) their float rounding differs enough to change
    deployment 2's collected episodes, which training then amplifies; here they agree to
    ``TOL`` after two deployments (as they do at XLA's defaults)."""
    saved = dict(compile_lib.COMPILE_EFFORTS["default"])
    compile_lib.COMPILE_EFFORTS["default"].update(xla_cpu_use_fusion_emitters=True)
    yield
    compile_lib.COMPILE_EFFORTS["default"].clear()
    compile_lib.COMPILE_EFFORTS["default"].update(saved)


def _cfg(*overrides):
    """The ``test`` config at the default compile effort (see the fixture above)."""
    return config_lib.apply_overrides(config_lib.load_config("test"),
                                      ["compile_effort='default'", *overrides])


def _key_data(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x)
                        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x, tree)


def assert_trees_close(a, b):
    a, b = jax.device_get(_key_data(a)), jax.device_get(_key_data(b))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   equal_nan=True, err_msg=jax.tree_util.keystr(path), **TOL)


def _rows(workdir, stream):
    """Log rows without wall-clock fields."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")}
            for r in read_jsonl(pathlib.Path(workdir) / f"{stream}.jsonl")]


def assert_rows_close(dir_a, dir_b):
    for stream in STREAMS:
        ra, rb = _rows(dir_a, stream), _rows(dir_b, stream)
        assert len(ra) == len(rb) and ra
        for x, y in zip(ra, rb):
            assert x.keys() == y.keys()
            assert_trees_close({k: np.float64(np.nan if v is None else v) for k, v in x.items()},
                               {k: np.float64(np.nan if v is None else v) for k, v in y.items()})


@pytest.fixture(scope="module")
def host_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("host")
    return workdir, run_host(_cfg(), workdir, progress=False)


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("compiled")
    return workdir, run_compiled(_cfg(), workdir)


def test_host_run_outputs(host_run):
    workdir, result = host_run
    static, _ = config_lib.split(_cfg())
    K, C = static.deploy.num_deployments, static.num_chunks
    for name in ("config.json", "chunks.csv", "chunks.jsonl", "deployments.csv",
                 "deployments.jsonl", "summary.json"):
        assert (workdir / name).is_file(), name
    assert (workdir / "tb").is_dir() and any((workdir / "tb").iterdir())
    chunks, deps = _rows(workdir, "chunks"), _rows(workdir, "deployments")
    assert [(r["deployment"], r["chunk"]) for r in chunks] == [
        (d, c) for d in range(1, K + 1) for c in range(1, C + 1)]
    assert [r["deployment"] for r in deps] == list(range(1, K + 1))
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["finished"] and summary["deployments"] == K
    assert summary["env_steps"] == K * static.deploy.batch_size
    assert summary["returns"] == [r["return"] for r in deps]
    assert summary["returns"][-1] == chunks[-1]["eval/return_mean"]
    assert set(summary["wall_time_s"]) >= {"total", "collect", "fit_dynamics", "fit_bc",
                                            "evaluate", "improve"}
    assert summary["compile_time_s"]["improve"] > 0
    # One checkpoint per deployment preamble and per chunk; the latest ones are kept.
    ck = Checkpointer(workdir / "checkpoints")
    assert ck.latest_step() == K * (C + 1) + C
    assert ck.read_meta()["position"] == {"deployment": K, "chunk": C}
    assert len(result.metrics) == K
    chex_leaf = result.metrics[0]["improve"]["imagined_return"]
    assert chex_leaf.shape == (C, static.trpo.chunk)
    assert np.isfinite(chex_leaf).all()


def test_host_driver_equals_compiled_driver(host_run, compiled_run):
    (dir_h, res_h), (dir_c, res_c) = host_run, compiled_run
    assert len(res_h.metrics) == len(res_c.metrics)
    assert_trees_close(res_h.metrics, res_c.metrics)
    assert_trees_close(res_h.state, res_c.state)
    assert_rows_close(dir_h, dir_c)


@pytest.mark.parametrize("stop_at", [(1, 2), (2, 1)])
def test_interrupted_and_resumed_run_equals_whole_run(host_run, tmp_path, stop_at):
    workdir, whole = host_run
    part = run_host(_cfg(), tmp_path, progress=False, stop_at=stop_at)
    assert not part.summary["finished"]
    assert part.summary["position"] == {"deployment": stop_at[0], "chunk": stop_at[1]}
    # A crash after logging but before checkpointing leaves an extra row; resume drops it.
    with open(tmp_path / "chunks.jsonl", "a") as f:
        f.write(json.dumps({"step": 99, "deployment": 9, "chunk": 9}) + "\n")
    resumed = run_host(_cfg(), tmp_path, progress=False, resume=True)
    assert resumed.summary["finished"]
    assert_trees_close(resumed.state, whole.state)
    assert_rows_close(tmp_path, workdir)
    assert resumed.summary["returns"] == pytest.approx(whole.summary["returns"], rel=1e-4, abs=1e-5)
    # The metrics of the deployments run whole in the resumed session match too.
    assert_trees_close(resumed.metrics, whole.metrics[len(whole.metrics) - len(resumed.metrics):])


def test_nothing_recompiles_across_deployments_or_hparams(host_run, tmp_path):
    # Same shapes, another seed and other HParams: the cached executables serve the whole run.
    cfg = _cfg("seed=7", "trpo.target_kl=0.02", "bc.learning_rate=1e-3")
    with count_compiles() as compiles:
        result = run_host(cfg, tmp_path, progress=False)
    assert result.summary["finished"]
    assert compiles == []
    assert result.summary["returns"] != host_run[1].summary["returns"] or \
        result.summary["bc_returns"] != host_run[1].summary["bc_returns"]


def _tree_hashes(root):
    import hashlib
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pathlib.Path(root).rglob("*")) if p.is_file()}


def test_finished_run_resumes_without_compiling_or_writing(host_run, tmp_path):
    import shutil
    workdir = tmp_path / "done"
    shutil.copytree(host_run[0], workdir)
    before = _tree_hashes(workdir)
    with count_compiles() as compiles:
        result = run_host(_cfg(), workdir, progress=False, resume=True)
    assert compiles == [] and result.state is None
    assert result.summary == json.loads((workdir / "summary.json").read_text())
    assert _tree_hashes(workdir) == before


def _interrupt_on_call(monkeypatch, n):
    """Ctrl-C arrives during the n-th compiled call of the host loop."""
    real, calls = host_lib._Loop._call, []

    def call(self, name, state):
        calls.append(name)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, name, state)

    monkeypatch.setattr(host_lib._Loop, "_call", call)


def test_ctrl_c_keeps_the_last_checkpoint_and_resume_is_exact(host_run, tmp_path, monkeypatch):
    _interrupt_on_call(monkeypatch, 7)  # preamble (4 calls), chunk 1 (2), then improve of chunk 2
    with pytest.raises(Interrupted, match=r"interrupted; continue from deployment 1, chunk 1 with --resume"):
        run_host(_cfg(), tmp_path, progress=False)
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if "tmp" in p.name]
    monkeypatch.undo()
    resumed = run_host(_cfg(), tmp_path, progress=False, resume=True)
    assert_trees_close(resumed.state, host_run[1].state)
    assert_rows_close(tmp_path, host_run[0])


def test_cli_ctrl_c_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    _interrupt_on_call(monkeypatch, 2)
    rc = main(["train", "--config", "test", "--workdir", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 130
    assert err == ["bremen train: interrupted; continue from the start (no checkpoint yet) with "
                   f"--resume --workdir {tmp_path / 'r'}"]


def test_checkpoint_every_k_chunks(host_run, tmp_path, monkeypatch):
    saved = []
    real = host_lib.Run.save
    monkeypatch.setattr(host_lib.Run, "save",
                        lambda self, state, pos, book: (saved.append(pos),
                                                        real(self, state, pos, book)))
    cfg = config_lib.apply_overrides(_cfg(), ["checkpoint.every=2", "trpo.iterations=6"])
    run_host(cfg, tmp_path, progress=False)
    # C = 3 chunks: preambles always, chunk 2 (every 2nd) and chunk 3 (the last) of each deployment.
    assert saved == [(1, 0), (1, 2), (1, 3), (2, 0), (2, 2), (2, 3)]


def test_train_is_vmappable_over_keys_and_hparams(monkeypatch):
    # The deployment step is traced once for all K deployments (a scan body, not unrolled).
    monkeypatch.setattr(Schedule, "deployment", chex.assert_max_traces(Schedule.deployment, n=1))
    static, hp = config_lib.split(_cfg())
    train = make_train(Schedule(make_phases(static)))
    keys = jax.random.split(jax.random.key(0), 2)
    hps = jax.tree.map(lambda x: jnp.stack([x, x]), hp)
    state, metrics = jax.eval_shape(jax.vmap(train), keys, hps)
    K, C = static.deploy.num_deployments, static.num_chunks
    assert state.env_steps.shape == (2,)
    assert metrics["eval"]["eval/return_mean"].shape == (2, K, C)
    assert metrics["improve"]["imagined_return"].shape == (2, K, C, static.trpo.chunk)


def test_cli_train_end_to_end_refuse_and_resume(host_run, tmp_path, capsys):
    workdir = tmp_path / "run"
    args = ["train", "--config", "test", "--workdir", str(workdir), "--no-progress",
            "--config.compile_effort=default"]  # as _cfg()
    assert main(args) == 0
    assert_rows_close(workdir, host_run[0])
    before = (workdir / "chunks.jsonl").read_text()
    capsys.readouterr()
    # A second run in the same directory is refused and changes nothing.
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (workdir / "chunks.jsonl").read_text() == before
    # Resuming a finished run does nothing; a different --config or a static change is refused.
    assert main(["train", "--resume", "--workdir", str(workdir), "--no-progress"]) == 0
    assert (workdir / "chunks.jsonl").read_text() == before
    capsys.readouterr()
    assert main(["train", "--resume", "--workdir", str(workdir), "--config", "quick"]) == 2
    err = capsys.readouterr().err
    assert "differs from the config of the run" in err and "task: 'inverted_pendulum'" in err
    assert main(["train", "--resume", "--workdir", str(workdir),
                 "--config.deploy.batch_size=800"]) == 2
    assert "deploy.batch_size: 400 -> 800" in capsys.readouterr().err
    assert main(["train", "--resume", "--workdir", str(tmp_path / "none")]) == 2
    assert "no run to resume" in capsys.readouterr().err

    # Interrupted after deployment 1, resumed from the command line with an HParam change
    # allowed explicitly (recorded in resumes.jsonl).
    part = tmp_path / "part"
    run_host(_cfg(), part, progress=False, stop_at=(1, 2))
    assert main(["train", "--resume", "--workdir", str(part), "--no-progress"]) == 0
    assert_rows_close(part, host_run[0])
    part2 = tmp_path / "part2"
    run_host(_cfg(), part2, progress=False, stop_at=(1, 2))
    assert main(["train", "--resume", "--workdir", str(part2), "--no-progress",
                 "--config.trpo.target_kl=0.05"]) == 0
    assert read_jsonl(part2 / "resumes.jsonl")[-1]["changed"] == ["trpo.target_kl: 0.1 -> 0.05"]
    assert json.loads((part2 / "config.json").read_text())["trpo"]["target_kl"] == 0.05


def test_cli_compiled_driver_and_its_resume_rules(host_run, compiled_run, tmp_path, capsys):
    workdir = tmp_path / "c"
    assert main(["train", "--config", "test", "--workdir", str(workdir),
                 "--driver", "compiled", "--config.compile_effort=default"]) == 0
    assert_rows_close(workdir, compiled_run[0])
    mid = tmp_path / "mid"
    run_host(_cfg(), mid, progress=False, stop_at=(1, 1))
    capsys.readouterr()
    assert main(["train", "--resume", "--workdir", str(mid), "--driver", "compiled"]) == 2
    assert "resumes only at deployment boundaries" in capsys.readouterr().err


@pytest.mark.slow
def test_learns_inverted_pendulum(tmp_path, monkeypatch, optimized):
    """BREMEN's deterministic return after the last deployment is >= 10x the random policy's.

    Generalized backend, 1000-step episodes (random policy ~5). ~25 s on two CPU cores; seeds
    0-4 reach 100-1000. target_kl 0.5 for the same reason as in the quick config (few TRPO
    iterations from a clone whose sigma sits at its floor).
    """
    cfg = config_lib.apply_overrides(config_lib.load_config("test"), [
        "backend='generalized'", "episode_length=1000", "deploy.num_deployments=3",
        "deploy.batch_size=4000", "deploy.num_envs=20", "dynamics.hidden_sizes=(64, 64)",
        "dynamics.batch_size=128", "dynamics.max_epochs=40", "dynamics.patience=10",
        "dynamics.eval_every=5", "bc.num_steps=500", "imagine.horizon=250",
        "imagine.batch_size=5000", "trpo.target_kl=0.5", "trpo.iterations=60", "trpo.chunk=20",
        "eval.num_episodes=5", "compile_effort='default'"])
    # 12K generalized-backend steps and 15 1000-step evaluation episodes: LLVM -O3 (conftest's
    # ``optimized``) runs them several times faster than the suite's -O0.
    monkeypatch.setitem(compile_lib.COMPILE_EFFORTS, "default", optimized.options)
    result = run_host(cfg, tmp_path, progress=False)
    # Deployment 1 collects 4,000 steps with the uniform random policy: hundreds of episodes
    # (no separate evaluator to compile for it).
    random_return = result.summary["random_policy_return"]
    assert 1.0 < random_return < 20.0
    final = result.summary["returns"][-1]
    assert final >= 10 * random_return, (final, random_return, result.summary["returns"])


def test_workdir_lock_refuses_a_second_process_and_takes_over_stale_locks(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    from bremen_jax.run.lock import LOCK_NAME, StaleLockWarning, WorkdirLock, WorkdirLocked

    work = tmp_path / "w"
    work.mkdir()
    held = WorkdirLock(work)  # another run holds it (flock is per open file, even in-process)
    try:
        rc = main(["train", "--config", "test", "--workdir", str(work), "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "is in use by pid" in err[0]
        assert sorted(p.name for p in work.iterdir()) == [LOCK_NAME]
    finally:
        held.release()
    assert not (work / LOCK_NAME).exists()
    # A lock file left by a dead process on this host is taken over, with a warning.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (work / LOCK_NAME).write_text(json.dumps({"pid": int(dead), "host": socket.gethostname(),
                                              "time": 0}))
    with pytest.warns(StaleLockWarning, match=f"pid {dead}"):
        WorkdirLock(work).release()
    # Another host's lock is never broken silently.
    (work / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": 0}))
    with pytest.raises(WorkdirLocked, match=r"on elsewhere .*another host"):
        WorkdirLock(work)


def test_released_claim_removes_only_the_empty_directories_it_created(tmp_path):
    """A claim that wrote nothing leaves no directory behind; one that wrote a file, or a
    directory that was there before, stays (with its parents)."""
    from bremen_jax.run.lock import LOCK_NAME
    from bremen_jax.run.workdir import claim_workdir

    lock = claim_workdir(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c" / LOCK_NAME).is_file()
    lock.release()
    assert sorted(tmp_path.iterdir()) == []
    lock = claim_workdir(tmp_path / "a" / "b" / "c")
    (tmp_path / "a" / "b" / "c" / "config.json").write_text("{}")
    lock.release()
    lock.release()   # idempotent
    assert [p.name for p in (tmp_path / "a" / "b" / "c").iterdir()] == ["config.json"]
    (tmp_path / "mine").mkdir()
    claim_workdir(tmp_path / "mine").release()
    assert (tmp_path / "mine").is_dir()
    lock = claim_workdir(tmp_path / "a" / "d")   # "a" was there: only "d" is removed
    lock.release()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


def _flip_latest_arrays(checkpoints: pathlib.Path, steps=None) -> None:
    """Flips 64 bytes in the largest array file of the latest (or the given) checkpoint(s)."""
    numbered = sorted((p for p in checkpoints.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for step_dir in (numbered[-1:] if steps is None else [p for p in numbered if int(p.name) in steps]):
        files = [f for f in (step_dir / "state").rglob("*") if f.is_file() and f.parent.name == "d"]
        f = max(files, key=lambda q: q.stat().st_size)
        data = bytearray(f.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
        f.write_bytes(bytes(data))


def test_resume_skips_a_damaged_latest_checkpoint_or_refuses(host_run, tmp_path, capsys):
    work = tmp_path / "r"
    run_host(_cfg(), work, progress=False, stop_at=(2, 1))
    _flip_latest_arrays(work / "checkpoints")
    capsys.readouterr()
    assert main(["train", "--resume", "--workdir", str(work), "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "is damaged" in out or "is corrupt" in out
    assert "resuming from an older checkpoint" in out
    assert_rows_close(work, host_run[0])
    # Every checkpoint damaged: refused in one line, nothing changed.
    work2 = tmp_path / "r2"
    run_host(_cfg(), work2, progress=False, stop_at=(1, 2))
    _flip_latest_arrays(work2 / "checkpoints", steps=range(100))
    before = _tree_hashes(work2)
    assert main(["train", "--resume", "--workdir", str(work2), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no intact checkpoint" in err[0] and "Traceback" not in err[0]
    assert _tree_hashes(work2) == before
