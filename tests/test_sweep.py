"""Sweeps: the vmapped runs axis equals runs done one by one, ensemble-size masking equals a run
built with exactly k members, the sweep compiles once, its files, bad sweep files, padding and the
memory estimate.

The sweep is ``bremen_jax/configs/sweeps/test.py`` (2 points x 2 seeds of the tiny ``test``
config); it is compiled once for the module (about a minute on two CPU cores). The runs "one by
one" come from the compiled driver (:func:`bremen_jax.run.compiled.run_compiled`), whose
executable the deployment tests already built for the same config (persistent compilation cache),
so only the 2-member reference adds a compile.

Tolerances: the batched (``vmap``) program and the unbatched one use different matmul kernels, so
they agree to float32 rounding, not bit for bit. The test sweep's ``trpo.cg_damping`` of 100 keeps
the TRPO solve well-conditioned so those differences stay small over the whole 2-deployment run;
every metric must agree within ``TOL`` of its own scale, the first deployment's preamble (real
data, ensemble fit, behaviour cloning) within ``TOL_PREAMBLE`` and the returns exactly.
"""

from __future__ import annotations

import contextlib
import json
import math

import jax
import jax.monitoring
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax import sweep
from bremen_jax.algo.phases import make_phases
from bremen_jax.algo.schedule import Schedule
from bremen_jax.datasets import scores
from bremen_jax.run.compile import clear_cache
from bremen_jax.run.compiled import run_compiled
from bremen_jax.sweep import devices as sweep_devices
from bremen_jax.sweep import report as sweep_report
from bremen_jax.sweep import spec as sweep_spec

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
TOL = 5e-2           # |sweep - reference| <= TOL * max(|reference|) per metric, whole run
TOL_PREAMBLE = 1e-5  # same, deployment 1's collect / ensemble fit / BC / BC evaluation
SCALE_FLOOR = 1e-3   # metrics that are ~0 by construction (surrogate before the step)
# The final r.r of the (unconverged, 10-step) conjugate-gradient solve is itself a rounding-level
# quantity: it is not compared over the whole run (its consequences, the steps, are).
ROUNDING_METRICS = ("trpo/cg_residual",)
RETURN_KEYS = ("return_d1", "return_d2", "bc_return_d1", "bc_return_d2", "final_return",
               "best_return", "random_return")


@contextlib.contextmanager
def count_compiles():
    """Names of the programs compiled (or fetched from the persistent cache) inside."""
    names = []

    def listener(name, secs, **kwargs):
        if name == COMPILE_EVENT:
            names.append(kwargs.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _ours(compiles):
    """The sweep programs among the compiled (small eager ops also compile on first use)."""
    return [n for n in compiles if sweep.PROGRAM_NAME in str(n)]


def assert_metrics_close(a, b, tol=TOL, members: int | None = None):
    """Every leaf of ``a`` (sweep) within ``tol`` x its scale in ``b`` (reference); with
    ``members``, per-member ``dynamics/*`` leaves of ``a`` are cut to the first ``members``."""
    paths = jax.tree_util.tree_leaves_with_path(a)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(paths, jax.tree.leaves(b)):
        name = jax.tree_util.keystr(path)
        if any(m in name for m in ROUNDING_METRICS):
            continue
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if members is not None and "dynamics/" in name and x.shape[-1:] != y.shape[-1:]:
            x = x[..., :members]
        assert x.shape == y.shape, name
        np.testing.assert_array_equal(np.isfinite(x), np.isfinite(y), err_msg=name)
        fin = np.isfinite(y)
        np.testing.assert_array_equal(x[~fin], y[~fin], err_msg=name)  # inf / nan alike
        if fin.any():
            scale = max(np.abs(y[fin]).max(), SCALE_FLOOR)
            err = np.abs(x[fin] - y[fin]).max() / scale
            assert err <= tol, f"{name}: max |diff| / scale = {err:.3g} > {tol}"


def _first_preamble(m):
    return jax.tree.map(lambda x: np.asarray(x)[0], m["preamble"])


def _run(metrics, r):
    return jax.tree.map(lambda x: np.asarray(x)[r], metrics)


def _stack(per_deployment):
    return jax.tree.map(lambda *xs: np.stack(xs), *per_deployment)


# ------------------------------------------------------------------------ shared runs
@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The test sweep, compiled fresh; counts compiles and traces of the deployment step."""
    clear_cache("sweep")
    traces = []
    step = Schedule.deployment

    def counted(*args, **kwargs):
        traces.append(1)
        return step(*args, **kwargs)

    workdir = tmp_path_factory.mktemp("sweep") / "out"
    with pytest.MonkeyPatch.context() as mp, count_compiles() as compiles:
        mp.setattr(Schedule, "deployment", counted)
        result = sweep.run_sweep("test", workdir)
    return result, compiles, len(traces)


@pytest.fixture(scope="module")
def plan():
    cfg, spec = sweep.load_sweep("test")
    return sweep.build_plans(cfg, spec)[0]


def _reference(cfg, seed, workdir):
    cfg = sweep_spec.override(cfg, {"seed": seed})
    return _stack(run_compiled(cfg, workdir).metrics)


@pytest.fixture(scope="module")
def one_by_one(plan, tmp_path_factory):
    """Each of the sweep's 4 runs with the compiled driver (``jit(train)``, no runs axis)."""
    return [_reference(plan.point_cfgs[plan.point[r]], int(plan.seeds[r]),
                       tmp_path_factory.mktemp(f"single{r}")) for r in range(plan.num_runs)]


@pytest.fixture(scope="module")
def exact_members(plan, tmp_path_factory):
    """Point 0 (num_active=2 of 3 members) as runs built with exactly 2 members."""
    cfg = sweep_spec.override(plan.point_cfgs[0], {"dynamics.num_members": 2})
    assert config_lib.split(cfg)[0].dynamics.num_members == 2
    return [_reference(cfg, int(plan.seeds[r]), tmp_path_factory.mktemp(f"exact{r}"))
            for r in range(plan.num_runs) if plan.point[r] == 0]


# ------------------------------------------------------------------------ equalities
def test_vmapped_sweep_equals_runs_one_by_one(swept, one_by_one, plan):
    result = swept[0]
    (metrics,) = result.metrics
    assert len(result.rows) == len(one_by_one) == 4
    for r, ref in enumerate(one_by_one):
        run = _run(metrics, r)
        assert_metrics_close(_first_preamble(run), _first_preamble(ref), tol=TOL_PREAMBLE)
        assert_metrics_close(run, ref)
        row = result.rows[r]
        assert (row["point"], row["seed"]) == (int(plan.point[r]), int(plan.seeds[r]))
        ev = np.asarray(ref["eval"]["eval/return_mean"])
        assert row["return_d1"] == pytest.approx(ev[0, -1], abs=1e-4)
        assert row["final_return"] == pytest.approx(ev[-1, -1], abs=1e-4)
    # The runs really differ (seeds and HParams reach the program).
    finals = [np.asarray(_run(metrics, r)["improve"]["trpo/kl_after"]) for r in range(4)]
    assert all(not np.allclose(finals[0], f) for f in finals[1:])


def test_ensemble_size_by_masking_equals_exactly_k_members(swept, exact_members, plan):
    (metrics,) = swept[0].metrics
    runs = [r for r in range(plan.num_runs) if plan.point[r] == 0]
    assert np.all(plan.hp.dynamics.num_active[runs] == 2)
    for r, ref in zip(runs, exact_members):
        run = _run(metrics, r)
        assert np.asarray(run["preamble"]["dynamics/val_loss"]).shape[-1] == 3
        assert np.asarray(ref["preamble"]["dynamics/val_loss"]).shape[-1] == 2
        assert_metrics_close(_first_preamble(run), _first_preamble(ref), tol=TOL_PREAMBLE,
                             members=2)
        assert_metrics_close(run, ref, members=2)
        # The masked member is never trained.
        np.testing.assert_array_equal(np.asarray(run["preamble"]["dynamics/epochs"])[:, 2], 0)
    other = [r for r in range(plan.num_runs) if plan.point[r] == 1]
    assert np.all(np.asarray(metrics["preamble"]["dynamics/epochs"])[other][:, :, 2] > 0)


def test_sweep_compiles_once(swept):
    result, compiles, traces = swept
    assert _ours(compiles) == [f"jit({sweep.PROGRAM_NAME})"], compiles
    assert traces == 1  # the deployment step is traced once for all runs and deployments
    (t,) = result.timings
    assert not t["compile_cached"] and t["compile_s"] > 0 and t["run_s"] > 0
    assert (t["runs"], t["padded_runs"], t["devices"]) == (4, 0, 1)


# ------------------------------------------------------------------------ files
def test_sweep_files_rows_and_summary(swept, plan):
    result = swept[0]
    w = result.workdir
    for name in ("sweep.json", "runs.csv", "runs.jsonl", "summary.json", "summary.md",
                 "metrics_outer0.npz", "plots/returns_vs_deployment.png",
                 "plots/final_vs_ensemble_size.png"):
        assert (w / name).is_file(), name
    for png in (w / "plots").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(line) for line in (w / "runs.jsonl").read_text().splitlines()]
    assert rows == result.rows
    assert [(r["point"], r["seed"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r["dynamics.num_active"] for r in rows] == [2, 2, 3, 3]
    assert [r["ensemble_size"] for r in rows] == [2, 2, 3, 3]
    assert [r["trpo.target_kl"] for r in rows] == [0.05, 0.05, 0.1, 0.1]
    header = (w / "runs.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["run", "outer", "point", "seed"] and set(RETURN_KEYS) <= set(header)
    ev = np.asarray(result.metrics[0]["eval"]["eval/return_mean"])
    for r, row in enumerate(rows):
        assert row["return_d2"] == pytest.approx(ev[r, 1, -1])
        assert row["best_return"] == pytest.approx(ev[r].max())
        # normalised score against the shipped inverted_pendulum references (random, expert)
        r_rand, r_exp = scores.reference_returns("inverted_pendulum")
        assert row["final_score"] == pytest.approx(
            100 * (row["final_return"] - r_rand) / (r_exp - r_rand))
    assert result.summary["points"][0]["final_score_mean"] is not None
    meta = json.loads((w / "sweep.json").read_text())
    assert meta["finished"] and meta["device"]["num_devices"] == 1 and meta["seeds"] == [0, 1]
    assert meta["config"]["trpo"]["cg_damping"] == 100.0
    npz = np.load(w / "metrics_outer0.npz")
    np.testing.assert_array_equal(npz["eval|eval/return_mean"], ev)
    np.testing.assert_array_equal(npz["seeds"], plan.seeds)

    summary = json.loads((w / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    points = summary["points"]
    assert len(points) == 2 and [g["rank"] for g in points] == [1, 2]
    means = [g["final_return_mean"] for g in points]
    assert means == sorted(means, reverse=True)
    assert [g["best"] for g in points] == [True, False]
    for g in points:  # mean ± sample std over the two seeds, by hand
        x = [r["final_return"] for r in rows if r["point"] == g["point"]]
        assert g["final_return_mean"] == pytest.approx((x[0] + x[1]) / 2)
        assert g["final_return_std"] == pytest.approx(abs(x[0] - x[1]) / math.sqrt(2))
    md = (w / "summary.md").read_text()
    best_line = next(line for line in md.splitlines() if "**best**" in line)
    assert points[0]["label"] in best_line


def test_existing_sweep_dir_is_refused(swept):
    w = swept[0].workdir
    before = (w / "runs.jsonl").read_text()
    with count_compiles() as compiles, pytest.raises(sweep.SweepExistsError, match="not empty"):
        sweep.run_sweep("test", w)
    assert not _ours(compiles) and (w / "runs.jsonl").read_text() == before


# ------------------------------------------------------------------------ specs and plans
def test_plans_grid_outer_and_seeds():
    cfg = config_lib.load_config("test")
    spec = sweep.parse_sweep(cfg, {
        "seeds": [3, 5],
        "grid": {"trpo.target_kl": [0.05, 0.2], "imagine.explore_sigma": [0.1, 0.3]},
        "outer": {"imagine.horizon": [10, 20]}})
    plans = sweep.build_plans(cfg, spec)
    assert [p.static.imagine.horizon for p in plans] == [10, 20]
    assert plans[0].static != plans[1].static
    for p in plans:
        assert p.num_runs == 8
        np.testing.assert_array_equal(p.seeds, [3, 5] * 4)
        np.testing.assert_array_equal(p.point, [0, 0, 1, 1, 2, 2, 3, 3])
        np.testing.assert_allclose(p.hp.trpo.target_kl, [0.05] * 4 + [0.2] * 4)
        np.testing.assert_allclose(p.hp.imagine.explore_sigma, [0.1, 0.1, 0.3, 0.3] * 2)
        assert p.hp.trpo.target_kl.dtype == np.float32
        assert p.hp.dynamics.num_active.dtype == np.int32
        np.testing.assert_array_equal(p.hp.trpo.gamma, np.float32(0.99))  # unswept: the config's


def test_random_search_points():
    cfg = config_lib.load_config("test")
    raw = {"seeds": 1, "random": {"num_points": 50, "seed": 7, "space": {
        "trpo.target_kl": ("log_uniform", 0.01, 1.0),
        "imagine.explore_sigma": ("uniform", 0.1, 0.2),
        "dynamics.num_active": ("int_uniform", 1, 3), "trpo.lam": ("choice", [0.9, 0.97])}}}
    a, b = sweep.parse_sweep(cfg, raw), sweep.parse_sweep(cfg, raw)
    assert a.points == b.points and len(a.points) == 50
    kl = np.array([p["trpo.target_kl"] for p in a.points])
    assert kl.min() >= 0.01 and kl.max() <= 1.0 and (kl < 0.1).any() and (kl > 0.1).any()
    assert all(0.1 <= p["imagine.explore_sigma"] <= 0.2 for p in a.points)
    assert {p["dynamics.num_active"] for p in a.points} == {1, 2, 3}
    assert {p["trpo.lam"] for p in a.points} == {0.9, 0.97}
    raw["random"]["seed"] = 8
    assert sweep.parse_sweep(cfg, raw).points != a.points


BAD_SPECS = [
    ({"seeds": 0}, "'seeds' must be > 0"),
    ({"seeds": -2}, "'seeds' must be > 0"),
    ({"seeds": [1, 1]}, "distinct"),
    ({"seeds": "3"}, "'seeds' must be"),
    ({"grids": {"trpo.target_kl": [0.1]}}, r"unknown sweep key\(s\) \['grids'\]"),
    ({"grid": {}}, "'grid' must be a non-empty dict"),
    ({"grid": {"trpo.target_kl": []}}, "non-empty list"),
    ({"grid": {"trpo.target_kl": 0.1}}, "non-empty list"),
    ({"grid": {"trpo.target_klx": [0.1]}}, "unknown config field 'trpo.target_klx'"),
    ({"grid": {"imagine.horizon": [10, 20]}}, r"\['imagine.horizon'\].*move them to 'outer'"),
    ({"points": [{"dynamics.num_members": 4}]}, "move them to 'outer'"),
    ({"grid": {"seed": [1, 2]}}, "top-level 'seeds'"),
    ({"grid": {"dynamics.num_active": [2, 4]}}, r"num_active \(4\) must be <= .*num_members"),
    ({"grid": {"trpo.target_kl": [-0.1]}}, r"trpo.target_kl must be in \(0, 10\]"),
    ({"grid": {"trpo.target_kl": [0.1]}, "points": [{"trpo.lam": 0.9}]}, "at most one"),
    ({"points": []}, "non-empty list of non-empty dicts"),
    ({"random": {"num_points": 0, "space": {"trpo.lam": ("choice", [0.9])}}}, "num_points"),
    ({"random": {"num_points": 2, "space": {"trpo.lam": ("normal", 0, 1)}}}, "'uniform', lo"),
    ({"random": {"num_points": 2, "space": {"trpo.target_kl": ("log_uniform", 0.0, 1)}}},
     "0 < lo <= hi"),
    ({"outer": {"imagine.horizon": [10]}, "grid": {"imagine.horizon": [10]}}, "both 'outer'"),
    ({"outer": {"imagine.horizon": [1000]}}, "imagine.horizon .* must be <= episode_length"),
    ({"outer": {"imagine.nope": [1]}}, "unknown config field 'imagine.nope'"),
]


@pytest.mark.parametrize("raw,message", BAD_SPECS)
def test_bad_sweep_specs_get_clear_errors(raw, message):
    cfg = config_lib.load_config("test")
    with pytest.raises(sweep.SweepError, match=message):
        sweep.load_sweep((cfg, raw))


def test_bad_sweep_files_get_clear_errors(tmp_path):
    with pytest.raises(sweep.SweepError, match="not found.*'test'"):
        sweep.load_sweep("no_such_sweep")
    (tmp_path / "nosweep.py").write_text("def get_config():\n    return None\n")
    with pytest.raises(sweep.SweepError, match="defines no get_sweep"):
        sweep.load_sweep(tmp_path / "nosweep.py")
    (tmp_path / "nocfg.py").write_text("def get_sweep():\n    return {'seeds': 2}\n")
    with pytest.raises(sweep.SweepError, match="neither get_config"):
        sweep.load_sweep(tmp_path / "nocfg.py")
    (tmp_path / "base.py").write_text(
        "base = 'test'\n\ndef get_sweep():\n    return {'seeds': 2, 'grid': {'trpo.lam': [0.9]}}\n")
    cfg, spec = sweep.load_sweep(tmp_path / "base.py", overrides=["trpo.gamma=0.95"])
    assert cfg.task == "inverted_pendulum" and cfg.trpo.gamma == 0.95 and spec.seeds == (0, 1)
    with pytest.raises(sweep.SweepError, match=r"override\(s\) of swept field\(s\) \['trpo.lam'\]"):
        sweep.load_sweep(tmp_path / "base.py", overrides=["trpo.lam=0.9"])
    with pytest.raises(config_lib.ConfigError, match="unknown config field"):
        sweep.load_sweep("test", overrides=["trpo.nope=1"])


# ------------------------------------------------------------------------ devices and memory
def test_padding():
    assert [sweep.padded_size(r, 4) for r in (1, 3, 4, 5, 8)] == [4, 4, 4, 8, 8]
    assert sweep.padded_size(3, 1) == 3
    tree = {"a": np.arange(3, dtype=np.int32), "b": np.ones((3, 2), np.float32) * [[1], [2], [3]]}
    out = sweep.pad_runs(tree, 4)
    np.testing.assert_array_equal(out["a"], [0, 1, 2, 2])
    np.testing.assert_array_equal(out["b"][:, 0], [1, 2, 3, 3])
    with pytest.raises(ValueError, match="must be > 0"):
        sweep.padded_size(0, 4)


def test_run_state_bytes_counts_the_buffer():
    static, _ = config_lib.split(config_lib.load_config("test"))
    phases = make_phases(static)
    state = jax.eval_shape(phases.init, jax.eval_shape(jax.random.key, 0))
    o, a, cap, K = phases.task.obs_size, phases.task.action_size, static.buffer_capacity, \
        static.deploy.num_deployments
    # obs, next_obs, action, reward, done, truncation (f32) + is_val (bool) + segment (i32);
    # seg_start, seg_size [K] i32; size, num_segments i32; overflowed bool.
    buffer_bytes = cap * ((2 * o + a + 3) * 4 + 1 + 4) + 2 * K * 4 + 2 * 4 + 1
    assert sweep.tree_nbytes(state.buffer) == buffer_bytes
    assert sweep.run_state_bytes(phases) > buffer_bytes
    avail, source = sweep.available_memory_bytes(jax.devices())
    assert avail is not None and avail > 0 and "MemAvailable" in source


def test_memory_estimate_refuses_before_compiling(monkeypatch, tmp_path):
    monkeypatch.setattr(sweep_devices, "available_memory_bytes", lambda devices: (1000, "test limit"))
    with count_compiles() as compiles, pytest.raises(sweep.SweepMemoryError) as err:
        sweep.run_sweep("test", tmp_path / "w")
    msg = str(err.value)
    assert "per device" in msg and "1000 B is free (test limit)" in msg
    assert "4 runs x" in msg and "fewer runs per device" in msg
    assert isinstance(err.value, ValueError)  # the CLI reports ValueErrors as usage errors
    assert not _ours(compiles) and not (tmp_path / "w").exists()


def test_memory_of_the_compiled_program_is_checked(swept, monkeypatch, tmp_path):
    (t,) = swept[0].timings
    pre, post = t["memory_estimate"]["need_bytes"], t["memory_compiled"]["need_bytes"]
    assert pre == 4 * sweep.STATE_COPIES * t["memory_estimate"]["run_state_bytes"]
    assert post > pre  # the tiny config's temporaries outweigh its state
    monkeypatch.setattr(sweep_devices, "available_memory_bytes", lambda devices: (pre + 1, "test limit"))
    with pytest.raises(sweep.SweepMemoryError, match="memory_analysis"):
        sweep.run_sweep("test", tmp_path / "w")  # the compiled program is cached: no compile


def test_report_helpers():
    assert sweep_report.fmt_bytes(512) == "512 B"
    assert sweep_report.fmt_bytes(3 * 1024 ** 3) == "3.0 GiB"
    assert sweep_report.label({"trpo.target_kl": 0.123456, "x": 2}) == \
        "trpo.target_kl=0.1235, x=2"
    assert sweep_report.label({}) == "base config"


def test_progress_text_is_the_last_evaluation_over_real_runs():
    """Rows past ``num_runs`` are padding; the last chunk of the last deployment is reported.
    Runs 10, 20, 30 (padding 1000): mean 20, sample std 10."""
    ev = np.zeros((4, 2, 3))
    ev[:, -1, -1] = [10.0, 20.0, 30.0, 1000.0]
    ev[:, 0, -1] = 500.0                    # an earlier deployment: not reported
    text = sweep_report.progress_text({"eval": {"eval/return_mean": ev}}, num_runs=3)
    assert text == "return 20.0 ± 10.0 (min 10.0, max 30.0) over 3 runs"
    one = sweep_report.progress_text({"eval": {"eval/return_mean": ev}}, num_runs=1)
    assert one == "return 10.0 ± 0.0 (min 10.0, max 10.0) over 1 run"
    assert sweep_report.progress_text({}, 3) == "no evaluation in the metrics"
