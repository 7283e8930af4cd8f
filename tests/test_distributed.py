"""Two real processes: ``bremen sweep --distributed`` over a global mesh equals one process.

Two ``bremen sweep --config test --distributed`` processes start on this machine
(``jax.distributed.initialize`` with a localhost coordinator, CPU collectives through gloo), each
with 2 fake CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``): the 4 runs of the
``test`` sweep are sharded over the 4 global devices, process 0 computes runs 0-1, process 1 runs
2-3, and process 0 writes the files. One process with 4 fake devices runs the same per-device
program, so its files must hold the same numbers exactly. Both sides share the test session's
persistent compilation cache (only process 0 writes to it). Every process runs in its own process group with a
timeout, and the groups are killed whatever happens, so a hung coordinator cannot hang the suite.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT_S = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


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
def sweeps(tmp_path_factory):
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
    (rc, stdout, stderr), = _run_all([(_sweep_cmd(out / "one"), _env(4))], TIMEOUT_S)
    assert rc == 0, _failure("one process", rc, stdout, stderr)
    return out, [" ".join(o.split()) for _, o, _ in res_two], seconds


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


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
