"""The sweep sharded over 4 fake CPU devices equals the single-device sweep, a run count that
does not divide the device count (3 runs on 4 devices) is padded and the padding dropped, and two
real processes (``bremen sweep --distributed`` over a global mesh) equal one process.

XLA's device count is fixed when JAX starts, so the 4-device sweeps run in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (sharing the persistent compilation
cache). The single-device sweep is the one ``tests/test_sweep.py`` compiles (cached in-process
when both modules run in one session). Tolerances: see ``tests/test_sweep.py``.

Two processes: two ``bremen sweep --config test --distributed`` processes start on this machine
(``jax.distributed.initialize`` with a localhost coordinator, CPU collectives through gloo), each
with 2 fake CPU devices: the 4 runs of the ``test`` sweep are sharded over the 4 global devices,
process 0 computes runs 0-1, process 1 runs 2-3, and process 0 writes the files. The one process
with 4 fake devices above runs the same per-device program (``bremen sweep`` is
:func:`bremen_jax.sweep.run_sweep`), so the two processes' files must hold its numbers exactly;
it is the reference here too, and is not run a second time. Every process runs in its own process
group with a timeout, and the groups are killed whatever happens, so a hung coordinator cannot
hang the suite.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import signal
import textwrap
import time

import jax
import numpy as np
import pytest

from bremen_jax import sweep

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT_S = 900
TOL = 5e-2
ROUNDING_METRICS = ("cg_residual",)
RETURNS = ("return_d1", "return_d2", "bc_return_d1", "bc_return_d2", "final_return",
           "best_return", "random_return")
POINT0 = {"dynamics.num_active": 2, "trpo.target_kl": 0.05}

CHILD = textwrap.dedent("""
    import json, sys
    import jax
    from bremen_jax import sweep
    out = sys.argv[1]
    assert jax.device_count() == 4, jax.devices()
    four = sweep.run_sweep("test", out + "/four")
    cfg, _ = sweep.load_sweep("test")
    three = sweep.run_sweep((cfg, {"seeds": 3, "points": [%r]}), out + "/three")
    # checkpointed (one deployment per call) through, and interrupted after its first checkpoint
    # then resumed: the sharded, padded states are saved and restored onto the 4 devices
    from bremen_jax.run.checkpoint import Checkpointer
    through = sweep.run_sweep((cfg, {"seeds": 3, "points": [%r]}), out + "/through",
                              checkpoint_every=1)
    save = Checkpointer.save
    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt
    Checkpointer.save = save_then_stop
    try:
        sweep.run_sweep((cfg, {"seeds": 3, "points": [%r]}), out + "/resumed", checkpoint_every=1)
    except KeyboardInterrupt:
        pass
    Checkpointer.save = save
    resumed = sweep.run_sweep((cfg, {"seeds": 3, "points": [%r]}), out + "/resumed", resume=True)
    print(json.dumps({"devices": [str(d) for d in jax.devices()],
                      "timings": [four.timings[0], three.timings[0], resumed.timings[0]]}))
""" % (POINT0, POINT0, POINT0, POINT0))


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_close(a: dict, b: dict, runs_a, runs_b, tol=TOL):
    """Every metric of runs ``runs_a`` of ``a`` within ``tol`` x its scale of ``runs_b`` of b."""
    assert a.keys() == b.keys()
    for k in a:
        if k in ("seeds", "point") or any(m in k for m in ROUNDING_METRICS):
            continue
        x, y = a[k][runs_a].astype(np.float64), b[k][runs_b].astype(np.float64)
        fin = np.isfinite(y)
        np.testing.assert_array_equal(np.isfinite(x), fin, err_msg=k)
        if fin.any():
            err = np.abs(x[fin] - y[fin]).max() / max(np.abs(y[fin]).max(), 1e-3)
            assert err <= tol, f"{k}: max |diff| / scale = {err:.3g} > {tol}"


def _env(devices: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COORDINATOR")}
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    cache = jax.config.jax_compilation_cache_dir
    if cache:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("devices")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out)], cwd=ROOT, env=_env(4),
                          capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, info


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    return sweep.run_sweep("test", tmp_path_factory.mktemp("one") / "out",
                           devices=jax.devices()[:1])


def test_four_fake_devices_equal_single_device(four_devices, single_device):
    out, info = four_devices
    assert len(info["devices"]) == 4
    t4 = info["timings"][0]
    assert (t4["devices"], t4["runs"], t4["padded_runs"], t4["runs_per_device"]) == (4, 4, 0, 1)
    meta = json.loads((out / "four" / "sweep.json").read_text())
    assert meta["device"]["num_devices"] == 4 and meta["finished"]
    rows4, rows1 = _rows(out / "four" / "runs.jsonl"), single_device.rows
    assert [(r["point"], r["seed"]) for r in rows4] == [(r["point"], r["seed"]) for r in rows1]
    for r4, r1 in zip(rows4, rows1):
        for k in RETURNS:
            assert r4[k] == pytest.approx(r1[k], abs=1e-4), k
    m4 = _npz(out / "four" / "metrics_outer0.npz")
    m1 = _npz(single_device.workdir / "metrics_outer0.npz")
    _assert_close(m4, m1, slice(None), slice(None))


def test_run_count_not_divisible_by_devices_is_padded(four_devices, single_device):
    out, info = four_devices
    t3 = info["timings"][1]
    assert (t3["devices"], t3["runs"], t3["padded_runs"], t3["runs_per_device"]) == (4, 3, 1, 1)
    assert t3["compile_cached"]  # same shapes as the 4-run sweep: no second compile
    rows3 = _rows(out / "three" / "runs.jsonl")
    assert [(r["point"], r["seed"], r["run"]) for r in rows3] == [(0, 0, 0), (0, 1, 1), (0, 2, 2)]
    assert all(r["dynamics.num_active"] == 2 for r in rows3)
    m3 = _npz(out / "three" / "metrics_outer0.npz")
    assert m3["eval|eval/return_mean"].shape[0] == 3  # the padded run is dropped
    np.testing.assert_array_equal(m3["seeds"], [0, 1, 2])
    assert json.loads((out / "three" / "summary.json").read_text())["num_runs"] == 3
    # Runs 0 and 1 are the 4-device sweep's runs 0 and 1 (same program, same device each).
    m4 = _npz(out / "four" / "metrics_outer0.npz")
    for k in m3:
        if k not in ("seeds", "point"):
            np.testing.assert_array_equal(m3[k][:2], m4[k][:2], err_msg=k)
    # ... and close to the single-device sweep's; seed 2 is a new, finite run.
    m1 = _npz(single_device.workdir / "metrics_outer0.npz")
    _assert_close({k: v[:2] for k, v in m3.items()}, {k: v[:2] for k, v in m1.items()},
                  slice(None), slice(None))
    assert np.isfinite(m3["eval|eval/return_mean"][2]).all()


def test_checkpointed_sweep_resumes_on_four_devices(four_devices):
    """3 runs padded to 4 on 4 devices, one deployment per call: interrupted after its first
    checkpoint and resumed, it equals the same sweep run through exactly, and the one-program
    sweep to rounding."""
    out, info = four_devices
    assert info["timings"][2]["resumed_after_deployment"] == 1
    assert info["timings"][2]["padded_runs"] == 1
    through, resumed = _npz(out / "through" / "metrics_outer0.npz"), _npz(
        out / "resumed" / "metrics_outer0.npz")
    assert through.keys() == resumed.keys()
    for k in through:
        np.testing.assert_array_equal(through[k], resumed[k], err_msg=k)
    three = _npz(out / "three" / "metrics_outer0.npz")
    _assert_close(resumed, three, slice(None), slice(None))
    assert not (out / "resumed" / "checkpoints").exists()


def test_initialize_distributed_one_process_and_global_arrays(tmp_path):
    """``initialize_distributed`` from the environment, a global mesh, inputs built per shard
    and results gathered with ``process_allgather`` (one process: all a machine here can do)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
               JAX_NUM_PROCESSES="1", JAX_PROCESS_ID="0")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_force_host_platform_device_count=2").strip()
    code = textwrap.dedent("""
        import numpy as np
        from jax.experimental import multihost_utils
        from jax.sharding import NamedSharding, PartitionSpec
        from bremen_jax.sweep import devices as sweep
        assert sweep.initialize_distributed() == (0, 1)
        mesh = sweep.make_runs_mesh()
        assert mesh.size == 2
        x = np.arange(8.0).reshape(4, 2)
        g = sweep.global_array(x, NamedSharding(mesh, PartitionSpec("runs")))
        assert len(g.addressable_shards) == 2 and g.addressable_shards[0].data.shape == (2, 2)
        assert np.array_equal(multihost_utils.process_allgather(g, tiled=True), x)
        assert np.array_equal(sweep.gather(g), x)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


# ------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_all(cmds: list[tuple[list[str], dict]], timeout: float) -> list[tuple[int, str, str]]:
    """Starts every command in its own process group; kills every group on the way out."""
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
             for cmd, env in cmds]
    deadline = time.monotonic() + timeout
    try:
        outs = []
        for p in procs:
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{' '.join(p.args)} did not finish within {timeout:.0f} s")
            outs.append((p.returncode, out, err))
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _failure(who: str, rc: int, stdout: str, stderr: str) -> str:
    """The lines that say what went wrong (gloo / coordination chatter left out)."""
    lines = [x for x in stderr.splitlines() if x.strip() and "Gloo" not in x
             and not x.startswith("WARNING")]
    errors = [x for x in lines if "rror" in x][:10]
    return "\n".join([f"{who}: rc {rc}", stdout[-1500:], *errors, "...", *lines[-15:]])


def _sweep_cmd(workdir: pathlib.Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bremen_jax.cli", "sweep", "--config", "test", "--workdir",
            str(workdir), *extra]


@pytest.fixture(scope="module")
def sweeps(four_devices, tmp_path_factory):
    """The two-process sweep, and the four-device one process of :func:`four_devices`."""
    out = tmp_path_factory.mktemp("distributed")
    port = _free_port()
    two = [(_sweep_cmd(out / "two", "--distributed"),
            _env(2, JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
                 JAX_PROCESS_ID=str(i))) for i in range(2)]
    t0 = time.monotonic()
    res_two = _run_all(two, TIMEOUT_S)
    seconds = time.monotonic() - t0
    for i, (rc, stdout, stderr) in enumerate(res_two):
        assert rc == 0, _failure(f"process {i}", rc, stdout, stderr)
    (out / "one").symlink_to(four_devices[0] / "four", target_is_directory=True)
    return out, [" ".join(o.split()) for _, o, _ in res_two], seconds


def test_runs_are_split_between_the_two_processes(sweeps):
    out, stdouts, _ = sweeps
    for i, text in enumerate(stdouts):
        assert f"bremen sweep: process {i} of 2" in text
        m = re.search(r"on 4 cpu device\(s\) \(process (\d) of 2: runs ([\d,]+)\)", text)
        assert m is not None, text[-1500:]
        assert int(m[1]) == i and m[2] == ("0,1" if i == 0 else "2,3")
    meta = json.loads((out / "two" / "sweep.json").read_text())
    assert meta["finished"] and meta["device"]["process_count"] == 2
    assert meta["device"]["num_devices"] == 4
    t = meta["timings"][0]      # process 0's view (it alone writes the files)
    assert (t["runs"], t["devices"], t["runs_per_device"]) == (4, 4, 1)
    assert (t["process"], t["process_runs"]) == (0, [0, 1])


def test_two_processes_equal_one_process(sweeps):
    out, _, _ = sweeps
    rows2 = [json.loads(x) for x in (out / "two" / "runs.jsonl").read_text().splitlines()]
    rows1 = [json.loads(x) for x in (out / "one" / "runs.jsonl").read_text().splitlines()]
    assert len(rows2) == len(rows1) == 4
    assert rows2 == rows1
    m2, m1 = _npz(out / "two" / "metrics_outer0.npz"), _npz(out / "one" / "metrics_outer0.npz")
    assert m2.keys() == m1.keys()
    for k in m1:
        np.testing.assert_array_equal(m2[k], m1[k], err_msg=k)
