"""The compile-time suite's parser, summary and verdicts on a canned JAX compile log (no real
measurement: those run in ``benchmarks/compile_time.py``)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

import pytest

from bremen_jax.bench import compile_time as ct

LOG = """\
WARNING:jax._src.dispatch:Finished tracing copy for jit in 0.000250000 sec
WARNING:jax._src.dispatch:Finished XLA compilation of jit(copy) in 0.008000000 sec
WARNING:jax._src.dispatch:Finished tracing init for jit in 0.062500000 sec
WARNING:jax._src.interpreters.pxla:Compiling jit(init) with global shapes and types (ShapedArray(key<fry>[]),). Argument mapping: (UnspecifiedValue,).
WARNING:jax._src.dispatch:Finished jaxpr to MLIR module conversion jit(init) in 0.250000000 sec
WARNING:jax._src.dispatch:Finished XLA compilation of jit(init) in 3.500000000 sec
some unrelated line: Finished nothing
WARNING:jax._src.dispatch:Finished tracing collect for jit in 7.5 sec
WARNING:jax._src.dispatch:Finished jaxpr to MLIR module conversion jit(collect) in 5.25 sec
WARNING:jax._src.dispatch:Finished XLA compilation of jit(collect) in 36.75 sec
WARNING:jax._src.dispatch:Finished tracing collect for jit in 0.5 sec
WARNING:jax._src.dispatch:Finished jaxpr to MLIR module conversion jit(collect) in 0.25 sec
WARNING:jax._src.compiler:Persistent compilation cache hit for 'jit_collect' with key 'jit_collect-abc'
WARNING:jax._src.dispatch:Finished XLA compilation of jit(collect) in 1.25e-1 sec
"""


def test_parse_counts_and_sums_per_program():
    p = ct.parse_compile_log(LOG)
    assert set(p) == {"copy", "init", "collect"}
    c = p["collect"]
    assert (c.compiles, c.traces, c.cache_hits) == (2, 2, 1)
    assert c.trace_s == pytest.approx(8.0) and c.lower_s == pytest.approx(5.5)
    assert c.xla_s == pytest.approx(36.875) and c.total_s == pytest.approx(50.375)
    i = p["init"]
    assert (i.compiles, i.traces, i.cache_hits) == (1, 1, 0)
    assert i.total_s == pytest.approx(0.0625 + 0.25 + 3.5)
    assert p["copy"].total_s == pytest.approx(0.00825)


def test_summary_orders_pools_small_and_names_repeats():
    s = ct.summarize_programs(ct.parse_compile_log(LOG))
    assert [p["name"] for p in s["programs"]] == ["collect", "init"]   # largest first
    assert s["small"] == {"names": 1, "compiles": 1, "seconds": 0.008}  # copy (8.25 ms)
    assert s["repeated"] == {"collect": 2}
    assert (s["compiles"], s["cache_hits"]) == (4, 1)
    assert s["total_s"] == pytest.approx(50.375 + 3.8125 + 0.00825, abs=1e-3)
    assert s["programs"][0]["total_s"] == 50.375


def test_hlo_sizes_from_dump_names(tmp_path):
    (tmp_path / "jax_ir0003_jit_collect_compile.mlir").write_text("x" * 10)
    (tmp_path / "jax_ir0007_jit_collect_compile.mlir").write_text("x" * 5)
    (tmp_path / "jax_ir0004_jit_fit_bc_compile.mlir").write_text("y" * 3)
    (tmp_path / "notes.txt").write_text("z")
    assert ct.hlo_sizes(tmp_path) == {"collect": 15, "fit_bc": 3}


def _row(command, config, phase, compile_s, wall_s, load=0.2):
    return {"command": command, "config": config, "phase": phase, "rc": 0, "wall_s": wall_s,
            "own_compile_s": compile_s, "total_s": compile_s, "load_avg_1min": load,
            "programs": [{"name": "collect", "total_s": 12.0, "xla_s": 10.0}]}


def test_verdicts_met_missed_and_not_measured():
    rows = [_row("train_host", "test", "cold", 18.0, 30.0),
            _row("train_host", "test", "warm", 4.5, 9.0, load=3.0),
            _row("sweep", "test", "cold", 20.0, 61.0)]
    v = {(t["command"], t["config"], t["phase"]): t for t in ct.verdicts(rows, cores=2)}
    assert v[("train_host", "test", "cold")]["verdict"] == "met"
    warm = v[("train_host", "test", "warm")]
    assert warm["verdict"] == "missed" and warm["value_s"] == 4.5
    assert warm["why"] == ("4.5 s > 3 s; load average 3.0 on 2 cores (other jobs); largest "
                           "program collect: 12.0 s (XLA 10.0 s)")
    sweep = v[("sweep", "test", "cold")]
    assert sweep["verdict"] == "missed" and sweep["value_s"] == 61.0    # wall time, not compile
    assert v[("train_compiled", "test", "cold")]["verdict"] == "not measured"
    assert len(v) == len(ct.TARGETS)


def test_merge_keeps_earlier_rows_unless_measured_again(tmp_path, capsys):
    old = [_row("train_host", "test", "cold", 30.0, 40.0), _row("sweep", "test", "cold", 9, 80)]
    new = [_row("train_host", "test", "cold", 18.0, 25.0),
           _row("train_host", "quick", "cold", 25.0, 300.0)]
    rows = ct.merge_rows(old, new)
    assert [(r["command"], r["config"], r["own_compile_s"]) for r in rows] == [
        ("sweep", "test", 9), ("train_host", "test", 18.0), ("train_host", "quick", 25.0)]
    v = {(t["command"], t["config"], t["phase"]): t["verdict"] for t in ct.verdicts(rows, 2)}
    assert v[("train_host", "quick", "cold")] == "met" and v[("sweep", "test", "cold")] == "missed"
    bad = tmp_path / "bad.json"
    bad.write_text('{"suite": "learning"}')
    for path in (bad, tmp_path / "missing.json"):
        assert ct.main(["--merge", str(path)], prog="compile_time") == 2
        assert "--merge" in capsys.readouterr().err


def test_command_lines(tmp_path):
    argv = ct.command_argv("train_compiled", "test", tmp_path, "warm")
    assert argv == ["train", "--config", "test", "--workdir",
                    str(tmp_path / "train_compiled-test-warm"), "--no-progress",
                    "--driver", "compiled"]
    assert ct.command_argv("sweep", "quick", tmp_path, "cold") is None
    assert ct.command_argv("offline", "test", tmp_path, "cold")[4] == str(tmp_path /
                                                                          "data-test.npz")
    with pytest.raises(ValueError, match="unknown command 'fly'"):
        ct.command_argv("fly", "test", tmp_path, "cold")


def test_own_compile_seconds(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"compile_time_s": {"total": 12.5}}))
    assert ct.own_compile_s("train_host", tmp_path, "") == 12.5
    (tmp_path / "sweep.json").write_text(json.dumps({"timings": [{"compile_s": 2.0},
                                                                 {"compile_s": 0.5}]}))
    assert ct.own_compile_s("sweep", tmp_path, "") == 2.5
    assert ct.own_compile_s("collect", tmp_path, "collected in 1.0 s + compile 59.5 s") == 59.5
    assert ct.own_compile_s("offline", tmp_path / "missing", "") is None


def test_bad_command_is_refused(capsys):
    assert ct.main(["--commands", "train_host,fly"], prog="compile_time") == 2
    assert "--commands: expected a subset of" in capsys.readouterr().err
    for phases in ("warm", "cold,hot", ""):
        assert ct.main(["--phases", phases], prog="compile_time") == 2
        assert "--phases: expected cold or cold,warm" in capsys.readouterr().err


def test_cold_only_runs_one_phase(tmp_path, monkeypatch):
    calls = []

    def fake_measure(argv, cache, log, dump=None, timeout=0):
        calls.append(argv[argv.index("--workdir") + 1])
        return {"rc": 0, "wall_s": 1.0, "load_avg_1min": 0.0, "total_s": 0.5, "compiles": 1,
                "cache_hits": 0, "programs": [], "stdout_tail": ""}

    monkeypatch.setattr(ct, "measure", fake_measure)
    rows = ct.run_measurements(["test"], ["train_host"], tmp_path, hlo=False, log=lambda s: None,
                               phases=["cold"])
    assert [r["phase"] for r in rows] == ["cold"] and calls[0].endswith("train_host-test-cold")


def test_a_stopped_suite_keeps_its_measurements(tmp_path, monkeypatch):
    """The JSON is rewritten after each measurement (``"finished": False``): a suite stopped by
    a time limit (a lent GPU's check stopped it after three of four) keeps the rows it made."""
    calls = []

    def fake_measure(argv, cache, log, dump=None, timeout=0):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as `timeout` stops it
        return {"rc": 0, "wall_s": 10.0 * len(calls), "load_avg_1min": 0.0, "total_s": 5.0,
                "compiles": 1, "cache_hits": 0, "programs": [], "stdout_tail": ""}

    monkeypatch.setattr(ct, "measure", fake_measure)
    out = tmp_path / "c.json"
    with pytest.raises(KeyboardInterrupt):
        ct.main(["--configs", "test", "--commands", "train_host,train_compiled", "--no-hlo",
                 "--out", str(out)], prog="compile_time")
    doc = json.loads(out.read_text())
    assert doc["finished"] is False
    assert [(r["command"], r["phase"], r["wall_s"]) for r in doc["measurements"]] == [
        ("train_host", "cold", 10.0), ("train_host", "warm", 20.0)]


# ------------------------------------------------------------------- benchmarks/gpu_check.sh
GPU_CHECK = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.sh"
FAKE_PYTHON = r"""#!/usr/bin/env bash
# records its arguments; makes the files the real commands would write
echo "$*" >> "$CALLS"
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --out) touch "${args[$((i + 1))]}" ;;
    --workdir) mkdir -p "${args[$((i + 1))]}"
               touch "${args[$((i + 1))]}/sweep.json" "${args[$((i + 1))]}/summary.json" ;;
  esac
done
"""


def test_gpu_check_script_parses():
    r = subprocess.run(["bash", "-n", str(GPU_CHECK)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_gpu_check_tiny_mode_runs_every_part(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out, calls = tmp_path / "out", tmp_path / "calls.txt"
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(out), "CALLS": str(calls)}
    r = subprocess.run(["bash", str(GPU_CHECK), "--dry-run"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    parts = (out / "parts.txt").read_text()
    for name in ("bench", "compile", "sweep"):
        assert re.search(rf"^{name} ok rc=0 seconds=\d+$", parts, re.M), parts
    assert {p.name for p in out.iterdir()} == {"env.txt", "log.txt", "parts.txt", "bench.md",
                                               "bench.json", "compile.json", "sweep.json",
                                               "sweep_summary.json"}   # 8 files: all come back
    lines = calls.read_text().splitlines()
    bench = next(x for x in lines if "bremen_jax.cli bench" in x)
    assert "--suite tiny" in bench and "--precision highest" in bench
    assert any("-m benchmarks.compile_time --quick" in x for x in lines)
    sweep = next(x for x in lines if "bremen_jax.cli sweep" in x)
    assert "--config.deploy.num_deployments=1" in sweep and "--config.trpo.chunk=2" in sweep
    assert "--checkpoint-every 1" in sweep   # each deployment's return in log.txt as it ends


def test_gpu_check_parts_pick_what_runs(tmp_path):
    """On the GPU (not tiny) the default runs bench and compile (all three do not fit one
    8-minute call, measured on a lent H200); PARTS=sweep runs the paper sweep alone, evaluating
    every 250 TRPO iterations."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    for parts, ran in [(None, ("bench", "compile")), ("sweep", ("sweep",))]:
        out, calls = tmp_path / f"out-{parts}", tmp_path / f"calls-{parts}.txt"
        env = {**os.environ, "PYTHON": str(fake), "OUT": str(out), "CALLS": str(calls)}
        env.pop("PARTS", None)
        if parts:
            env["PARTS"] = parts
        r = subprocess.run(["bash", str(GPU_CHECK)], env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        text = (out / "parts.txt").read_text()
        for name in ("bench", "compile", "sweep"):
            want = rf"^{name} ok rc=0" if name in ran else rf"^{name} not asked for"
            assert re.search(want, text, re.M), text
        lines = [x for x in calls.read_text().splitlines()
                 if "bremen_jax.cli" in x or "benchmarks.compile_time" in x]
        if parts == "sweep":
            assert len(lines) == 1 and "bremen_jax.cli sweep" in lines[0]
            assert "--config.trpo.chunk=250" in lines[0]
        else:
            assert len(lines) == 2 and "--suite paper" in lines[0] and "bfloat16" in lines[0]
