"""Benchmark machinery (issue 7): FLOP counts, projection arithmetic, targets, markdown, and the
suite runner on the tiny ``test`` config (its one real deployment replaced by a stand-in, so that
no 40-second deployment program is compiled here; ``--suite quick`` runs the real one)."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import pytest

from bremen_jax import config as config_lib
from bremen_jax.bench import common, projection, report, suite, targets
from bremen_jax.bench import phases as bench_phases


def _static(name):
    return config_lib.split(config_lib.load_config(name))[0]


# ------------------------------------------------------------------------------ FLOP counts
def test_mlp_flop_counts_by_hand():
    # dynamics member of halfcheetah: 23 -> 1024 -> 1024 -> 17
    fwd = 2 * (23 * 1024 + 1024 * 1024 + 1024 * 17)
    assert fwd == 2_179_072
    assert common.mlp_forward_flops((23, 1024, 1024, 17)) == 2_179_072
    assert common.mlp_grad_flops((23, 1024, 1024, 17)) == 6_537_216
    # policy: 17 -> 200 -> 200 -> 12
    assert common.mlp_forward_flops((17, 200, 200, 12)) == 91_600
    assert common.mlp_hvp_flops((17, 200, 200, 12)) == 549_600
    with pytest.raises(ValueError, match="sizes"):
        common.mlp_forward_flops((5,))


@pytest.mark.parametrize("epochs,every,passes", [(1, 5, 2), (5, 5, 3), (6, 5, 3), (7, 5, 4),
                                                 (200, 5, 42), (3, 1, 4)])
def test_fit_validation_passes(epochs, every, passes):
    # epochs 0..E-1 in blocks [0], [1, k], [k+1, 2k], ... (+ the last partial block), each
    # validated, plus the validation before training
    assert bench_phases.fit_validation_passes(epochs, every) == passes


def test_device_slug_and_peak_dtype():
    assert common.device_slug({"platform": "cpu", "cpu_count": 2}) == "cpu-2core"
    assert common.device_slug({"platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3",
                               "num_devices": 1}) == "gpu-h100"
    assert common.device_slug({"platform": "tpu", "device_kind": "TPU v4",
                               "num_devices": 4}) == "tpu-v4x4"
    assert common.peak_dtype("bfloat16") == jnp.bfloat16
    assert common.peak_dtype("tensorfloat32") == jnp.float32
    with pytest.raises(ValueError, match="precision"):
        common.peak_dtype("fp8")


def test_time_jitted_counts_and_rejects_bad_repeats():
    timing, out = common.time_jitted(lambda x: x * 2.0, jnp.ones(3), repeats=3, warmup=2)
    assert float(out.sum()) == 6.0 and timing.repeats == 3 and timing.warmup == 2
    assert 0 < timing.min_s <= timing.median_s and timing.compile_s > 0
    assert timing.program_bytes is None or timing.program_bytes >= 0
    with pytest.raises(ValueError, match="repeats"):
        common.time_jitted(lambda x: x, jnp.ones(1), repeats=0)


# ------------------------------------------------------------------------ projection arithmetic
def _fake_results(coll_s=2.0, coll_n=20_000, fit_step_s=0.1, bc_step_s=0.001, it_s=3.0,
                  ev_s=2.0, imagined=50_000, bc_steps=2000):
    def r(name, median, sizes, extra=None, compile_s=1.0):
        return {"name": name, "precision": "highest", "median_s": median, "compile_s": compile_s,
                "sizes": sizes, "extra": extra or {}}
    return [
        r("collection", coll_s, {"num_envs": 200, "steps": coll_n // 200, "transitions": coll_n},
          {"transitions_per_call": coll_n}, compile_s=10.0),
        r("ensemble_fit", 10.0, {"rows": 24000, "epochs": 5},
          {"s_per_minibatch_step": fit_step_s}),
        r("bc", bc_steps * bc_step_s, {"steps": bc_steps, "batch": 256}, {"s_per_step": bc_step_s}),
        r("trpo_iteration", it_s, {"imagined_transitions": imagined}, compile_s=4.0),
        r("evaluation", ev_s, {"episodes": 3}, compile_s=9.0),
    ]


def test_projection_of_the_paper_halfcheetah_run_by_hand():
    static = _static("halfcheetah")
    assert projection.is_paper_halfcheetah(static)
    c = projection.run_counts(static)
    assert c["real_steps"] == 1_000_000
    assert c["train_rows_per_deployment"] == [170_000, 340_000, 510_000, 680_000, 850_000]
    assert c["fit_minibatch_steps"] == 200 * 170 * (1 + 2 + 3 + 4 + 5) == 510_000
    assert c["bc_steps"] == 1_500_000 and c["trpo_iterations"] == 10_000
    assert c["evaluations"] == 5 * (1 + 80) == 405
    assert c["imagined_transitions"] == 500_000_000
    p = projection.project(_fake_results(), static)
    secs = {t["term"]: t["seconds"] for t in p["terms"]}
    assert secs["collection"] == pytest.approx(1_000_000 * 2.0 / 20_000)   # 100 s
    assert secs["ensemble_fit"] == pytest.approx(510_000 * 0.1)             # 51,000 s
    assert secs["bc"] == pytest.approx(1_500_000 * 0.001)                   # 1,500 s
    assert secs["trpo"] == pytest.approx(10_000 * 3.0)                      # 30,000 s
    assert secs["evaluation"] == pytest.approx(405 * 2.0)                   # 810 s
    assert secs["compile"] == pytest.approx(10 + 1 + 1 + 4 + 9)
    assert p["total_s"] == pytest.approx(83_435.0) and p["complete"]
    # fits stopped at patience + 1 = 21 epochs: 21 * 2,550 steps * 0.1 s
    assert p["total_s_fit_early_stop"] == pytest.approx(83_435.0 - 51_000 + 5_355)
    # deployment d: 200K * 1e-4 = 20 s collection, 200 * 170*d * 0.1 s fit,
    # 300 s BC, 6,000 s TRPO, 81 * 2 = 162 s evaluation
    assert p["per_deployment_s"] == pytest.approx([20 + 3400 * d + 300 + 6000 + 162
                                                   for d in range(1, 6)])
    full = {t["term"]: t["full_size"] for t in p["terms"]}
    assert full == {"collection": False, "ensemble_fit": False, "bc": False, "trpo": True,
                    "evaluation": True, "compile": True}


def test_projection_marks_missing_phases_and_falls_back_to_the_step_kernel():
    static = _static("halfcheetah")
    res = [{"name": "ensemble_step", "median_s": 1.0, "compile_s": 1.0, "sizes": {},
            "extra": {"s_per_minibatch_step": 0.05}},
           {"name": "bc", "error": "RuntimeError: boom"}]
    p = projection.project(res, static)
    fit = next(t for t in p["terms"] if t["term"] == "ensemble_fit")
    assert fit["seconds"] == pytest.approx(510_000 * 0.05) and "kernel" in fit["measured"]
    bc = next(t for t in p["terms"] if t["term"] == "bc")
    assert bc["seconds"] is None and not p["complete"]


def test_deployment_check_by_hand():
    static = _static("quick")   # 16K real steps, batch 256, 3K BC steps, 100 iterations
    res = _fake_results(coll_s=2.0, coll_n=4000, fit_step_s=0.01, bc_step_s=0.001, it_s=0.2,
                        ev_s=1.5, imagined=10_000, bc_steps=1000)
    res.append({"name": "deployment", "median_s": 60.0, "compile_s": 30.0, "sizes": {},
                "extra": {"fit_epochs_run": 30}})
    chk = projection.deployment_check(res, static)
    # 16000*5e-4 + 30*(13600//256 = 53)*0.01 + 3000*0.001 + 100*0.2 + (1 + 4)*1.5
    assert chk["parts_s"]["ensemble_fit"] == pytest.approx(15.9)
    assert chk["projected_s"] == pytest.approx(8.0 + 15.9 + 3.0 + 20.0 + 7.5)
    assert chk["measured_over_projected"] == pytest.approx(60.0 / 54.4)
    assert projection.deployment_check(res[:-1], static) is None


# ------------------------------------------------------------------------------------ targets
def _phase(name, precision="highest", **kw):
    base = {"name": name, "group": name, "precision": precision, "sizes": {}, "flop_formula": None,
            "flop_count": None, "compile_s": 1.0, "median_s": 1.0, "min_s": 0.9, "repeats": 3,
            "warmup": 1, "program_bytes": 2 ** 21, "throughput": 1.0, "throughput_unit": "x/s",
            "gflops": None, "fraction_of_peak": None, "peak_memory_bytes": None, "extra": {}}
    base.update(kw)
    return base


PAPER = {"ensemble": "5x[1024, 1024]", "batch": 1000, "imagined_transitions": 50_000,
         "horizon": 250, "baseline": "linear"}


def _cpu_doc():
    return {
        "suite": "paper", "config": "halfcheetah", "overrides": [], "date": "2026-11-25",
        "git": {"commit": "0123456789abcdef", "dirty": False}, "jax_version": "0.10.2",
        "backend": "cpu", "precision": ["highest"],
        "device": {"platform": "cpu", "device_kind": "cpu", "num_devices": 1, "cpu_count": 2,
                   "load_avg_start": [0.5, 0.4, 0.3], "load_avg_end": [1.0, 0.5, 0.3]},
        "matmul_peak": {"highest": {"gflops": 356.0, "dtype": "float32", "what": "chain"}},
        "matmul_peak_end_gflops": {"highest": 350.0}, "wall_s": 7500.0,
        "phases": [
            _phase("ensemble_fit", fraction_of_peak=0.86, gflops=306.2, sizes=PAPER),
            _phase("ensemble_step", fraction_of_peak=0.80, sizes=PAPER),
            _phase("imagined_rollout", fraction_of_peak=0.69, sizes=PAPER),
            _phase("trpo_iteration", median_s=2.9, sizes=PAPER,
                   extra={"breakdown_s": {"imagined_rollout": 0.5, "trpo_fvp_cg": 1.5,
                                          "rest": 0.9}}),
            _phase("bc", throughput=900.0, throughput_unit="steps/s",
                   extra={"samples_per_s": 900.0 * 256, "s_per_step": 1 / 900},
                   sizes={"batch": 256, "policy": [200, 200]}),
            {"name": "evaluation", "group": "evaluation", "precision": "highest",
             "error": "RuntimeError: boom"},
        ],
        "projection": {"highest": projection.project(_fake_results(), _static("halfcheetah"))},
        "deployment_check": {"highest": None},
    }


def test_targets_on_a_hand_written_cpu_result():
    t = {x["phase"]: x for x in targets.evaluate_targets(_cpu_doc())}
    assert t["ensemble_fit"]["met"] is True and t["ensemble_fit"]["applies"] is True
    assert t["ensemble_step"]["met"] is False
    assert t["imagined_rollout"]["met"] is True
    assert t["trpo_iteration"]["value"] == 2.9 and t["trpo_iteration"]["met"] is True
    assert t["bc"]["met"] is False and t["bc"]["target"] == 1000.0


def test_targets_on_gpu_check_the_projection_and_peaks():
    doc = _cpu_doc()
    doc["device"]["platform"] = "gpu"
    doc["projection"]["highest"] = {"total_s": 500.0, "paper_halfcheetah": True, "complete": True}
    t = targets.evaluate_targets(doc)
    proj = next(x for x in t if x["phase"] == "projection")
    assert proj["met"] is True and proj["applies"] is True
    rollout = next(x for x in t if x["phase"] == "imagined_rollout")
    assert rollout["target"] == 0.40 and rollout["met"] is True


# ----------------------------------------------------------------------------------- markdown
def test_report_renders_a_hand_written_result(tmp_path, capsys):
    doc = _cpu_doc()
    text = report.render(doc)
    assert "## Benchmarks: `paper` suite on cpu-2core (cpu)" in text
    assert "commit 0123456789" in text
    assert "| highest | 356.0 | 350.0 |" in text
    assert "| ensemble_fit | highest |" in text and "86.0%" in text and "306.2" in text
    assert "| 900 steps/s (230,400 samples/s) |" in text
    assert "ERROR: RuntimeError: boom" in text
    assert "2 MiB (program)" in text
    assert "| trpo_fvp_cg | 1.5000 | 52% |" in text          # 1.5 / 2.9
    assert "the paper's HalfCheetah run" in text
    assert "**23:10:35**" in text                             # 83,435 s
    assert "**missed**" in text and "| met |" in text
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"benchmark": "trpo_iteration"}))
    out = tmp_path / "r.md"
    assert report.main([str(path), str(old), "--out", str(out)]) == 0
    assert out.read_text().startswith("## Benchmarks")
    assert "skipped" in capsys.readouterr().err
    assert report.main([str(old)]) == 1


# --------------------------------------------------------------------------- the suite runner
def test_run_rejects_bad_arguments(capsys):
    assert suite.main(["--phases", "nope"]) == 2
    assert "unknown phase 'nope'" in capsys.readouterr().err
    assert suite.main(["--precision", "fp8"]) == 2
    assert "--precision" in capsys.readouterr().err
    assert suite.main(["--repeats", "0"]) == 2
    assert bench_phases.resolve_groups(["rollout", "ensemble_fit", "bc"]) == [
        "ensemble", "bc", "trpo"]


def test_command_line_constants_match_the_library():
    assert suite.PHASE_GROUPS == tuple(bench_phases.GROUPS)
    assert suite.PRECISIONS == common.PRECISIONS
    assert common.default_out_name({"platform": "cpu", "cpu_count": 2}, "tiny",
                                   "2026-01-02") == "cpu-2core-2026-01-02-tiny.json"


@pytest.fixture()
def stub_runner(monkeypatch):
    """suite.run_suite and report.render replaced: records the overrides, returns a small doc."""
    seen = {}

    def run_suite(name, groups, precisions, repeats, full, config, overrides, progress=None):
        seen.update(suite=name, groups=groups, overrides=list(overrides))
        return {"device": {"platform": "cpu", "cpu_count": 2}, "date": "2026-01-02",
                "phases": [], "overrides": list(overrides)}

    monkeypatch.setattr(suite, "run_suite", run_suite)
    monkeypatch.setattr(report, "render", lambda doc, source=None: f"REPORT {source}")
    return seen


def test_bench_writes_to_the_current_directory_or_out(tmp_path, monkeypatch, capsys,
                                                      stub_runner):
    from bremen_jax import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--suite", "tiny", "--phases", "bc", "--config.seed=3"]) == 0
    name = "cpu-2core-2026-01-02-tiny.json"
    doc = json.loads((tmp_path / name).read_text())
    assert doc["overrides"] == ["seed=3"] and stub_runner["groups"] == ["bc"]
    assert doc["command"] == ["bremen", "bench", "--suite", "tiny", "--phases", "bc",
                              "--config.seed=3"]
    assert capsys.readouterr().out == f"REPORT {name}\n"
    assert cli.main(["bench", "--suite", "tiny", "--out", "res/deeper"]) == 0
    assert (tmp_path / "res" / "deeper" / name).is_file()
    assert cli.main(["bench", "--suite", "tiny", "--out", "x.json"]) == 0
    assert (tmp_path / "x.json").is_file()


def test_bench_keeps_what_it_measured_when_stopped(tmp_path, monkeypatch, capsys):
    """After every phase group the document so far is written to ``--out`` (``"finished":
    False``): a bench stopped by a time limit (a lent GPU's check) keeps its phases; the report
    says it is partial."""
    from bremen_jax import cli

    def run_suite(name, groups, precisions, repeats, full, config, overrides, progress=None):
        doc = {"device": {"platform": "gpu", "cpu_count": 16}, "date": "2026-01-02",
               "phases": [{"name": "collection", "median_s": 0.8}], "finished": False}
        progress(doc)
        doc["phases"].append({"name": "ensemble_fit", "median_s": 0.1})
        progress(doc)
        raise KeyboardInterrupt  # as `timeout` stops it: nothing after this runs

    monkeypatch.setattr(suite, "run_suite", run_suite)
    out = tmp_path / "gpu.json"
    assert cli.main(["bench", "--suite", "tiny", "--out", str(out)]) != 0
    assert capsys.readouterr().err.strip().endswith("bremen bench: interrupted")
    doc = json.loads(out.read_text())
    assert doc["finished"] is False and [r["name"] for r in doc["phases"]] == ["collection",
                                                                               "ensemble_fit"]
    assert doc["command"] == ["bremen", "bench", "--suite", "tiny", "--out", str(out)]


def test_bench_override_is_a_deprecated_alias(tmp_path, capsys, stub_runner):
    from bremen_jax import cli

    out = tmp_path / "r.json"
    assert cli.main(["bench", "--suite", "tiny", "--override", "seed=4", "--config.seed=5",
                     "--out", str(out)]) == 0
    assert stub_runner["overrides"] == ["seed=4", "seed=5"]   # the later one wins
    assert capsys.readouterr().err.startswith(
        "bremen bench: --override FIELD=VALUE is deprecated and will be removed; use "
        "--config.FIELD=VALUE\n")


def test_bench_refuses_an_unwritable_out_before_running(tmp_path, capsys, stub_runner):
    from bremen_jax import cli

    (tmp_path / "file").write_text("x")
    assert cli.main(["bench", "--suite", "tiny", "--out", str(tmp_path / "file" / "r.json")]) == 2
    assert capsys.readouterr().err == (
        f"bremen bench: error: --out {tmp_path / 'file' / 'r.json'}: {tmp_path / 'file'} is "
        f"not a writable directory; expected a directory or a .json file in one\n")
    assert stub_runner == {}


def _fake_deployment_step(phases, state, hp):
    """Stand-in for deployment_step with its metric structure (the fit 'ran' 7 epochs)."""
    del hp
    E, C = phases.static.dynamics.num_members, phases.static.num_chunks
    metrics = {"preamble": {"dynamics/epochs": jnp.full((E,), 7, jnp.int32),
                            "bc_eval/return_mean": jnp.float32(1.5)},
               "improve": {}, "eval": {"eval/return_mean": jnp.arange(C, dtype=jnp.float32)}}
    return state.replace(env_steps=state.env_steps + 1), metrics


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench_phases, "deployment_step", _fake_deployment_step)
        rc = suite.main(["--suite", "tiny", "--out", str(out)])
    return rc, out


def test_tiny_suite_writes_a_valid_json(tiny_run):
    rc, out = tiny_run
    assert rc == 0
    doc = json.loads(out.read_text())
    for key in ("suite", "date", "git", "jax_version", "backend", "precision", "matmul_peak",
                "phases", "projection", "targets", "wall_s", "command"):
        assert key in doc, key
    assert doc["suite"] == "tiny" and doc["precision"] == ["highest"]
    assert doc["device"]["platform"] == "cpu" and len(doc["device"]["load_avg_end"]) == 3
    names = [r["name"] for r in doc["phases"]]
    assert names == ["collection", "ensemble_fit", "ensemble_step", "bc", "imagined_rollout",
                     "trpo_advantages", "trpo_gradient", "trpo_fvp_cg", "trpo_line_search",
                     "trpo_baseline", "trpo_update", "trpo_iteration", "evaluation",
                     "deployment"]
    peak = doc["matmul_peak"]["highest"]["flops_per_s"]
    for r in doc["phases"]:
        assert "error" not in r
        assert r["compile_s"] > 0 and 0 < r["min_s"] <= r["median_s"], r["name"]
        assert math.isfinite(r["throughput"]) and r["throughput"] > 0, r["name"]
        if r["flop_count"] is not None:
            assert r["fraction_of_peak"] == pytest.approx(r["flop_count"] / r["median_s"] / peak)
    assert all(t["applies"] is False for t in doc["targets"])   # tiny sizes: no target applies
    assert doc["finished"] is True
    text = report.render(doc)
    assert "| trpo_iteration | highest |" in text and "Partial" not in text
    assert "**Partial**: the suite stopped" in report.render({**doc, "finished": False})


def test_tiny_suite_flop_counts_by_hand(tiny_run):
    doc = json.loads(tiny_run[1].read_text())
    flops = {r["name"]: r["flop_count"] for r in doc["phases"]}
    # inverted_pendulum: obs 4, act 1; ensemble 3 x (5 -> 32 -> 32 -> 4): F_dyn = 2,624;
    # policy 4 -> 16 -> 16 -> 2: F_pol = 704. Fit: 400 rows -> 340 train (6 batches of 50),
    # 50 validation rows, 3 epochs -> 18 steps and 3 validation passes.
    assert flops["ensemble_fit"] == 3 * 2624 * 3 * 18 * 50 + 2624 * 3 * 50 * 3 == 22_435_200
    assert flops["ensemble_step"] == 3 * 2624 * 3 * 50 * 5
    assert flops["bc"] == 3 * 704 * 32 * 20
    assert flops["imagined_rollout"] == 160 * (2624 + 704)
    # Gauss-Newton FVPs (4 forwards each), 10 in CG and x'Fx from CG (test config defaults);
    # the sequential line search counts the candidates it evaluated (ls_index + 1).
    assert flops["trpo_fvp_cg"] == 160 * (1 * 704 + 10 * 4 * 704)  # linearised pass + FVPs
    ls = next(r for r in doc["phases"] if r["name"] == "trpo_line_search")
    cand = ls["extra"]["candidates_evaluated"]
    assert 1 <= cand <= 10
    assert flops["trpo_line_search"] == 160 * 704 * (1 + cand)
    assert flops["trpo_update"] == 160 * (3 * 704 + 10 * 4 * 704 + cand * 704)
    assert flops["trpo_iteration"] == (flops["imagined_rollout"] + flops["trpo_advantages"]
                                       + flops["trpo_update"])
    assert flops["collection"] is None and flops["trpo_baseline"] is None


def test_tiny_suite_projection_and_deployment_check(tiny_run):
    doc = json.loads(tiny_run[1].read_text())
    proj = doc["projection"]["highest"]
    assert proj["complete"] and not proj["paper_halfcheetah"]
    assert proj["total_s"] == pytest.approx(sum(t["seconds"] for t in proj["terms"]))
    dep = next(r for r in doc["phases"] if r["name"] == "deployment")
    assert dep["extra"]["fit_epochs_run"] == 7 and dep["extra"]["final_return"] == 1.0
    chk = doc["deployment_check"]["highest"]
    assert chk["fit_epochs"] == 7
    assert chk["measured_over_projected"] == pytest.approx(dep["median_s"] / chk["projected_s"])
    it = next(r for r in doc["phases"] if r["name"] == "trpo_iteration")
    parts = it["extra"]["breakdown_s"]
    assert sum(parts.values()) == pytest.approx(it["median_s"])


def test_trpo_ceiling_tiny_writes_its_json(tmp_path, capsys):
    """benchmarks.trpo_ceiling at tiny sizes: every part timed, FLOPs as counted by hand, the
    ceiling = the iteration's FLOPs over the parts' dots-only time."""
    from benchmarks import trpo_ceiling as tc

    out = tmp_path / "c.json"
    assert tc.main(["--tiny", "--repeats", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    s = doc["sizes"]
    assert s["policy_layers"] == [17, 16, 16, 12] and s["dynamics_layers"] == [23, 32, 32, 18]
    F = 2 * (17 * 16 + 16 * 16 + 16 * 12)      # 1,440
    F_dyn = 2 * (23 * 32 + 32 * 32 + 32 * 18)  # 5,152
    parts = doc["parts"]
    assert parts["fisher_vector_products"]["flop_count"] == 10 * 4 * F * 400
    assert parts["rollout_dynamics"]["flop_count"] == F_dyn * 400
    assert parts["policy_forward"]["flop_count"] == F * 400
    it = doc["iteration"]
    # rollout (F_dyn + F) + advantages 2F + linearise/gradient 3F + 10 FVPs + 4 candidates
    assert it["flop_count"] == 400 * (F_dyn + F + 2 * F + 3 * F + 40 * F + 4 * F)
    floor = (parts["rollout_dynamics"]["median_s"] + parts["fisher_vector_products"]["median_s"]
             + 10 * parts["policy_forward"]["median_s"])
    assert it["dots_only_s"]["median_s"] == pytest.approx(floor)
    peak = doc["matmul_peak"]["used_flops_per_s"]
    assert it["ceiling_fraction_of_peak"]["median"] == pytest.approx(it["flop_count"] / floor / peak)
    assert it["target_reachable"] == (it["ceiling_fraction_of_peak"]["median"] >= 0.75)
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tc.main(["--repeats", "0"])


def test_sweep_checkpoint_benchmark_writes_its_json(tmp_path):
    from benchmarks import sweep_checkpoint

    out = tmp_path / "ck.json"
    assert sweep_checkpoint.main(["--config", "test", "--runs", "2", "--repeats", "2",
                                  "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["runs"] == 2 and len(doc["save_s"]) == 2 and doc["restore_s"] > 0
    assert doc["state_bytes"] == 2 * doc["state_bytes_per_run"] > 0
    assert doc["disk_bytes"] > doc["state_bytes"] // 2  # incompressible fill: about its size


def test_suite_compile_log_and_its_report(tmp_path):
    """BREMEN_TEST_COMPILE_LOG records each compile with its test (tests/conftest.py, here in a
    pytest subprocess with a fresh cache); benchmarks.suite_compiles sums them by hand-checked
    numbers."""
    import os
    import pathlib
    import subprocess
    import sys

    from benchmarks import suite_compiles

    rows = [{"test": "tests/a.py::t1", "seconds": 1.5, "program": "jit(collect)"},
            {"test": "tests/b.py::t2", "seconds": 2.0, "program": "jit(collect)"},
            {"test": "tests/b.py::t2", "seconds": 0.25, "program": "jit(add)"}]
    text = suite_compiles.report(rows)
    assert "3 compiles, 3.8 s in all" in text
    assert "| jit(collect) | 2 | 3.5 | tests/a.py (1), tests/b.py (1) |" in text
    assert text.index("jit(collect)") < text.index("jit(add)")
    assert "| tests/b.py::t2 | 2.2 |" in text  # 2.0 + 0.25

    root = pathlib.Path(__file__).resolve().parents[1]
    log = tmp_path / "compiles"
    env = dict(os.environ, BREMEN_TEST_COMPILE_LOG=str(log),
               BREMEN_TEST_JAX_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_returns.py::test_gae_hand_example"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    logged = suite_compiles.load(str(log))
    assert logged and all(r["test"].startswith("tests/test_returns.py::test_gae_hand_example")
                          for r in logged)
    assert all(r["seconds"] > 0 for r in logged)
    assert suite_compiles.main([str(tmp_path / "nothing")]) == 2
