"""The learning-curves harness (experiments/learning_curves.py): schedules and the JSON validator
(fast), the tiny protocol end to end (BREMEN, SAC and PPO each give a curve at the same sample
counts) and same-seed determinism of BREMEN on one machine (slow: they compile Brax programs)."""

import copy
import json
import math
import re

import numpy as np
import pytest

from experiments import learning_baselines as lb
from experiments import learning_curves as lc
from experiments import learning_report as lr


def _entry(samples, seeds, deployments=None):
    return {"samples": samples, "returns": [[1.0] * len(seeds) for _ in samples],
            "seeds": seeds, "deployments": deployments,
            "deployments_at": list(range(1, len(samples) + 1)), "wall_s": [1.0], "config": {}}


def _doc():
    return {"device": "cpu2", "date": "2026-01-01", "commit": "abc", "tasks": {"t": {
        "bremen": _entry([400, 800], [0, 1], 2), "sac": _entry([400, 800], [0, 1])}}}


def test_validator_accepts_the_schema_and_names_what_is_wrong():
    lr.validate(_doc())
    bad = _doc()
    bad["tasks"]["t"]["sac"]["samples"] = [500, 800]
    with pytest.raises(ValueError, match=r"t: samples differ across algorithms"):
        lr.validate(bad)
    bad = _doc()
    bad["tasks"]["t"]["sac"]["returns"] = [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    with pytest.raises(ValueError, match=r"t/sac: returns must be \[\[per seed\]"):
        lr.validate(bad)
    bad = _doc()
    del bad["commit"]
    with pytest.raises(ValueError, match="missing key 'commit'"):
        lr.validate(bad)
    bad = _doc()
    bad["tasks"]["t"]["bremen"]["deployments"] = 0
    with pytest.raises(ValueError, match="deployments must be a positive int or null"):
        lr.validate(bad)


def test_stats_and_table_by_hand():
    m, s = lr.stats([[1.0, 3.0], [2.0, 2.0]])
    np.testing.assert_allclose(m, [2.0, 2.0])
    np.testing.assert_allclose(s, [math.sqrt(2.0), 0.0])  # sample std (ddof=1)
    doc = _doc()
    doc["tasks"]["t"]["sac"]["returns"] = [[1.0, 3.0], [2.0, 2.0]]
    table = lr.markdown_table(doc)
    assert "| sac | 2 | 2.0 ± 1.4 | 2.0 ± 0.0 |" in table
    assert "| algorithm | seeds | 400 | 800 |" in table


def test_baseline_schedules_line_up_with_the_grid():
    # SAC: prefill 1000 of a 5000 grid -> reports every gcd = 1000 steps: (50000-1000)/1000 + 1.
    assert lb.sac_schedule(5000, 50_000, {"min_replay_size": 1000, "num_envs": 1}) == (1000, 50)
    assert lb.sac_schedule(400, 800, {"min_replay_size": 0, "num_envs": 1}) == (400, 3)
    with pytest.raises(ValueError, match="must divide into the evaluation grid 400"):
        lb.sac_schedule(400, 800, {"min_replay_size": 100, "num_envs": 3})
    # PPO: 10 x 4 x b divides 400 and 4 divides 4b -> b = 10 (the largest <= 64).
    cfg = {"unroll_length": 10, "num_minibatches": 4, "num_envs": 4, "batch_size": None}
    assert lb.ppo_batch_size(400, cfg) == 10
    assert lb.ppo_batch_size(10_000, {**cfg, "num_minibatches": 8, "num_envs": 8}) == 25
    with pytest.raises(ValueError, match="no batch_size makes"):
        lb.ppo_batch_size(401, cfg)
    # The latest evaluation at or before each grid point.
    assert lb._align(400, 1200, {0: "a", 100: "b", 800: "c", 900: "d"}) == ["b", "c", "d"]


def test_unknown_task_or_algorithm_is_one_line(capsys):
    assert lc.main(["--protocol", "tiny", "--algorithms", "bremen,dqn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "algorithms must be some of" in err[0]


def test_a_mistyped_flag_is_one_line_with_the_closest_flag(capsys):
    with pytest.raises(SystemExit) as e:
        lc.main(["--protocl", "tiny"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --protocl tiny; did you mean " \
        "'--protocol'?" in err, err


def test_a_used_sweep_directory_is_one_line_before_anything_runs(tmp_path, capsys):
    used = lc.sweep_dir(tmp_path, "inverted_pendulum", "bremen_sampling")
    assert used == tmp_path / "inverted_pendulum-bremen_sampling"
    assert lc.sweep_dir(tmp_path, "inverted_pendulum", "bremen") == tmp_path / "inverted_pendulum"
    used.mkdir()
    (used / "sweep.json").write_text("{}")
    out = tmp_path / "l.json"
    assert lc.main(["--protocol", "tiny", "--algorithms", "bremen_sampling,sac", "--workdir",
                    str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inverted_pendulum-bremen_sampling exists and is not empty" in err[0]
    assert not out.exists() and (used / "sweep.json").read_text() == "{}"


def test_resume_continues_only_sweeps_begun_there(tmp_path, monkeypatch, capsys):
    """--resume lets a directory holding a sweep through (run_bremen gets resume and the
    checkpoint interval); one holding anything else is still refused in one line."""
    calls = []

    def fake_bremen(spec, seeds, workdir, log=print, checkpoint_every=None, resume=False):
        calls.append((workdir.name, checkpoint_every, resume))
        return _entry([400, 800], list(seeds), 2)

    monkeypatch.setattr(lc, "run_bremen", fake_bremen)
    used = lc.sweep_dir(tmp_path, "inverted_pendulum", "bremen_sampling")
    used.mkdir()
    (used / "sweep.json").write_text("{}")
    base = ["--protocol", "tiny", "--algorithms", "bremen_sampling", "--workdir", str(tmp_path),
            "--out", str(tmp_path / "l.json")]
    assert lc.main(base + ["--resume", "--checkpoint-every", "1"]) == 0
    assert calls == [("inverted_pendulum-bremen_sampling", 1, True)]
    (used / "sweep.json").unlink()
    (used / "mine.txt").write_text("keep")
    capsys.readouterr()
    assert lc.main(base + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and holds no sweep to resume" in err[0], err
    assert lc.main(base + ["--checkpoint-every", "0"]) == 2
    assert "--checkpoint-every must be >= 1" in capsys.readouterr().err
    assert (used / "mine.txt").read_text() == "keep" and len(calls) == 1


def test_a_resumed_bremen_entry_counts_the_earlier_calls_time(tmp_path, monkeypatch):
    """run_bremen on a sweep resumed after deployment 1 of 2: wall_s adds the earlier calls'
    seconds from the checkpoint's record (here 100 + 250) to this call's, and says so; without
    that record it stays this call's and says that instead."""
    import types

    from bremen_jax import sweep as sweep_pkg

    spec = {"config": "test", "overrides": []}
    K = int(lc.bremen_config(spec).deploy.num_deployments)
    ret = np.arange(2 * K * 3, dtype=np.float64).reshape(2, K, 3)  # [run, deployment, chunk]
    hist = {"compile_s": [100.0, 5.0], "chunk_s": [[1, 250.0], [K, 7.0]]}

    def fake(timings):
        return lambda *a, **k: types.SimpleNamespace(
            metrics=[{"eval": {"eval/return_mean": ret}}], rows=[{"seed": 3}, {"seed": 4}],
            timings=[timings])

    base = {"compile_s": 5.0, "run_s": 7.0, "resumed_after_deployment": 1, "history": hist}
    monkeypatch.setattr(sweep_pkg, "run_sweep", fake({**base, "earlier_s": 350.0}))
    e = lc.run_bremen(spec, [3, 4], tmp_path, log=lambda s: None, resume=True)
    assert e["returns"][-1] == [ret[0, -1, -1], ret[1, -1, -1]]
    assert 350.0 <= e["wall_s"][0] < 360.0 and e["timing_history"] == hist
    assert (f"resumed after deployment 1: this call ran deployments 2..{K} in"
            in e["wall_s_covers"] and "earlier calls (from the checkpoint's record) 350.0 s"
            in e["wall_s_covers"])
    monkeypatch.setattr(sweep_pkg, "run_sweep", fake({**base, "earlier_s": None}))
    e = lc.run_bremen(spec, [3, 4], tmp_path, log=lambda s: None, resume=True)
    assert e["wall_s"][0] < 10.0 and "earlier calls' time was not recorded" in e["wall_s_covers"]


def test_merge_keeps_other_entries_and_variants_add_their_overrides(tmp_path, monkeypatch):
    """--merge adds a run's (task, algorithm) entries to an existing JSON; a BREMEN variant runs
    the protocol's config plus its overrides, in its own work directory."""
    calls = []

    def fake_bremen(spec, seeds, workdir, log=print, *faults):
        calls.append((spec["overrides"][-1], workdir.name))
        return _entry([400, 800], list(seeds), 2)

    monkeypatch.setattr(lc, "run_bremen", fake_bremen)
    out = tmp_path / "l.json"
    base = ["--protocol", "tiny", "--out", str(out), "--workdir", str(tmp_path / "w")]
    assert lc.main(base + ["--algorithms", "bremen"]) == 0
    assert lc.main(base + ["--algorithms", "bremen_sampling", "--merge"]) == 0
    doc = json.loads(out.read_text())
    lr.validate(doc)
    assert sorted(doc["tasks"]["inverted_pendulum"]) == ["bremen", "bremen_sampling"]
    assert calls == [("eval.num_episodes=10", "inverted_pendulum"),
                     ("trpo.ratio_std='sampling'", "inverted_pendulum-bremen_sampling")]
    assert lc.main(base + ["--algorithms", "bremen"]) == 0          # without --merge: replaced
    assert sorted(json.loads(out.read_text())["tasks"]["inverted_pendulum"]) == ["bremen"]
    assert lc.main(base + ["--merge", "--algorithms", "bremen", "--episodes", "3"]) == 2


def test_first_seed_picks_seeds_not_yet_looked_at(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_bremen(spec, seeds, workdir, log=print, *faults):
        seen.append(list(seeds))
        return _entry([400, 800], list(seeds), 2)

    monkeypatch.setattr(lc, "run_bremen", fake_bremen)
    base = ["--protocol", "tiny", "--algorithms", "bremen", "--out", str(tmp_path / "l.json")]
    assert lc.main(base + ["--workdir", str(tmp_path / "a")]) == 0
    assert lc.main(base + ["--workdir", str(tmp_path / "b"), "--first-seed", "5"]) == 0
    assert lc.main(base + ["--workdir", str(tmp_path / "c"), "--first-seed", "5",
                           "--seeds", "3"]) == 0
    assert seen == [[0, 1], [5, 6], [5, 6, 7]]
    assert json.loads((tmp_path / "l.json").read_text())["tasks"]["inverted_pendulum"][
        "bremen"]["seeds"] == [5, 6, 7]
    capsys.readouterr()
    for bad in (["--first-seed", "-1"], ["--seeds", "0"]):
        assert lc.main(base + ["--workdir", str(tmp_path / "d")] + bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--seeds must be >= 1 and --first-seed >= 0" in err[0]


def test_grid_replaces_tuning_axes_and_reports_every_point(tmp_path, monkeypatch, capsys):
    """``--grid ALGO.FIELD=V1,V2`` replaces that axis of the built-in tuning grid (the others
    stay); the best point is reported with every point's mean in ``config.tuning``; a bad axis
    or --grid without --tune is one line and runs nothing."""
    assert lb.parse_grid(["sac.reward_scaling=5", "sac.learning_rate=3e-4,1e-3",
                          "ppo.unroll_length=10,20", "ppo.batch_size=8"]) == {
        "sac": {"reward_scaling": [5.0], "learning_rate": [3e-4, 1e-3]},
        "ppo": {"unroll_length": [10, 20], "batch_size": [8]}}
    for bad, msg in [("sac.hidden_sizes=1", "sac has no numeric setting 'hidden_sizes'"),
                     ("dqn.lr=1", "expected ALGO.FIELD=V1[,V2...]"),
                     ("sac.updates_per_step=1.5", "updates_per_step takes int values"),
                     ("ppo.batch_size=auto", "batch_size takes int values")]:
        with pytest.raises(ValueError, match=re.escape(msg)):
            lb.parse_grid([bad])
    ran = []

    def fake_baseline(algo, task, seeds, grid, total, cfg, num_episodes, log=print):
        ran.append(dict(cfg))
        final = 100 * cfg["reward_scaling"] + 1e4 * cfg["learning_rate"]
        return {"returns": [[0.0] * len(seeds)] * (total // grid - 1) +
                [[final + s for s in seeds]], "deployments_at": [1] * (total // grid),
                "wall_s": [1.0] * len(seeds), "config": dict(cfg)}

    monkeypatch.setattr(lb, "run_baseline", fake_baseline)
    out = tmp_path / "l.json"
    base = ["--protocol", "tiny", "--algorithms", "sac", "--out", str(out), "--workdir",
            str(tmp_path / "w")]
    assert lc.main(base + ["--tune", "--grid", "sac.reward_scaling=1,5",
                           "--grid", "sac.updates_per_step=1"]) == 0
    # learning_rate keeps its built-in axis [3e-4, 1e-3]: 2 x 2 points, seeds 0 and 1
    assert [(c["learning_rate"], c["reward_scaling"], c["updates_per_step"]) for c in ran] == [
        (3e-4, 1.0, 1), (3e-4, 5.0, 1), (1e-3, 1.0, 1), (1e-3, 5.0, 1)]
    # Each finished point was appended to the work directory as it finished (kept on a crash).
    kept = [json.loads(line) for line in
            (tmp_path / "w" / "inverted_pendulum-sac-points.jsonl").read_text().splitlines()]
    assert [k["point"]["reward_scaling"] for k in kept] == [1.0, 5.0, 1.0, 5.0]
    assert kept[3]["returns"][-1] == pytest.approx([510.0, 511.0]) and kept[3]["seeds"] == [0, 1]
    sac = json.loads(out.read_text())["tasks"]["inverted_pendulum"]["sac"]
    assert sac["config"]["tuned_best"] == {"learning_rate": 1e-3, "reward_scaling": 5.0,
                                           "updates_per_step": 1}
    assert [t["final_mean"] for t in sac["config"]["tuning"]] == pytest.approx(
        [103.5, 503.5, 110.5, 510.5])   # 100 rs + 1e4 lr + mean seed 0.5
    assert "sac tuning point {'learning_rate': 0.001, 'reward_scaling': 5.0, " \
           "'updates_per_step': 1}: final return 510.5 +- 0.7" in capsys.readouterr().out
    assert lc.main(base + ["--grid", "sac.reward_scaling=5"]) == 2
    assert "--grid needs --tune" in capsys.readouterr().err
    assert lc.main(base + ["--tune", "--grid", "sac.lr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sac has no numeric setting 'lr'" in err[0]
    # A PPO batch size that does not divide the evaluation grid is refused before any point runs.
    ran.clear()
    with pytest.raises(ValueError, match="no batch_size makes"):
        lb.tune_baseline("ppo", None, [0], 800, 1600, {}, 1, True, log=lambda *a: None,
                         axes={"batch_size": [10, 7]})
    assert ran == []


@pytest.mark.slow
def test_tiny_protocol_gives_three_curves_at_equal_samples(tmp_path):
    out = tmp_path / "learning.json"
    assert lc.main(["--protocol", "tiny", "--out", str(out), "--workdir",
                    str(tmp_path / "runs")]) == 0
    doc = json.loads(out.read_text())
    lr.validate(doc)
    algos = doc["tasks"]["inverted_pendulum"]
    assert sorted(algos) == ["bremen", "ppo", "sac"]
    for name, e in algos.items():
        # test config: 2 deployments x 400 real steps; every algorithm at 400 and 800.
        assert e["samples"] == [400, 800], name
        assert e["seeds"] == [0, 1]
        r = np.asarray(e["returns"])
        assert r.shape == (2, 2) and np.isfinite(r).all()
        assert (r >= 1.0).all() and (r <= 50.0).all(), name  # +1 per step, 50-step episodes
    assert algos["bremen"]["deployments"] == 2 and algos["bremen"]["deployments_at"] == [1, 2]
    # SAC: prefill 100 steps, then one policy per actor step; PPO: b = 10, 400 steps per update.
    assert algos["sac"]["deployments_at"] == [301, 701]
    assert algos["ppo"]["deployments_at"] == [1, 2]
    assert algos["ppo"]["config"]["batch_size"] == 10
    for suffix in (".md", "-inverted_pendulum.png", "-deployments.png"):
        assert out.with_name(out.stem + suffix).stat().st_size > 0
    # A partial document (BREMEN alone) still validates.
    part = copy.deepcopy(doc)
    part["tasks"]["inverted_pendulum"] = {"bremen": algos["bremen"]}
    lr.validate(part)


@pytest.mark.slow
def test_same_seed_same_config_same_machine_is_identical(tmp_path):
    """Issue 11 item 5: two runs of the test config on one machine give the very same numbers
    (exact equality of every deployments row, wall-clock fields aside)."""
    from bremen_jax import config as config_lib
    from bremen_jax.run import run_host
    from bremen_jax.run.logs import read_jsonl

    rows = []
    for name in ("a", "b"):
        run_host(config_lib.load_config("test"), tmp_path / name, progress=False)
        rows.append([{k: v for k, v in r.items() if not k.startswith("time/")}
                     for r in read_jsonl(tmp_path / name / "deployments.jsonl")])
    assert len(rows[0]) == 2 and "return" in rows[0][0]
    assert rows[0] == rows[1]


def test_ppo_bootstraps_on_time_out_only_where_the_env_reports_it():
    import collections
    import types

    import jax.numpy as jnp

    State = collections.namedtuple("State", "obs info")  # a pytree, as brax's State

    def env(info):
        return types.SimpleNamespace(reset=lambda key: State(jnp.zeros(3), info))

    assert lb._sets_time_out(env({"time_out": jnp.zeros(()), "truncation": jnp.zeros(())}))
    assert not lb._sets_time_out(env({"truncation": jnp.zeros(())}))


def test_merge_documents(tmp_path):
    a, b = _doc(), _doc()
    b["commit"] = "def"
    b["tasks"] = {"t": {"ppo": _entry([400, 800], [0, 1])}, "u": {"sac": _entry([10], [3])}}
    m = lr.merge([a, b])
    assert sorted(m["tasks"]["t"]) == ["bremen", "ppo", "sac"] and list(m["tasks"]["u"]) == ["sac"]
    assert m["commit"] == "abc, def"
    a["protocol"], b["protocol"] = "quick", "cpu"  # names differ, samples agree: both named
    assert lr.merge([a, b])["protocol"] == "quick, cpu"
    b["episodes_per_evaluation"] = 3
    with pytest.raises(ValueError, match="differ in episodes"):
        lr.merge([a, b])
    c = _doc()
    c["tasks"] = {"t": {"ppo": _entry([400, 1200], [0, 1])}}  # t's other entries end at 800
    with pytest.raises(ValueError, match="samples differ"):
        lr.merge([a, c])
    for name, doc in (("a", a), ("c", _doc())):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    out = tmp_path / "m.json"
    assert lr.main(["merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"),
                    "--out", str(out)]) == 0
    assert json.loads(out.read_text())["tasks"]["t"]["sac"]["seeds"] == [0, 1]
    assert lr.main(["merge", str(tmp_path / "none.json"), "--out", str(out)]) == 2


def test_every_algorithm_of_a_figure_gets_its_own_colour():
    """SAC keeps its orange, the faithful BREMEN its blue; variants without a fixed colour take
    the next Tableau colours not used in the figure (never SAC's orange), all distinct."""
    import matplotlib.colors as mcolors

    names = ["bremen_x", "sac", "bremen", "bremen_y"] + [f"v{i}" for i in range(12)]
    c = lr.colors_for(names)
    assert c["sac"] == "tab:orange" and c["bremen"] == "tab:blue"
    assert c["bremen_x"] == "tab:green" and c["bremen_y"] == "tab:red"
    hexes = [mcolors.to_hex(c[n]) for n in names]
    assert len(set(hexes)) == len(names)


def test_merge_pool_joins_disjoint_seeds_and_names_what_differs(tmp_path):
    """Seeds 5-6 given first, 0-1 second: pooled in increasing order of the runs' first seeds,
    returns [[10, 30, 50, 40], [1, 2, 3, 4]], wall times of both, both work directories."""
    a, b = _doc(), _doc()
    a["tasks"]["t"]["bremen"] = dict(_entry([400, 800], [5, 6], 2), wall_s=[7.0],
                                     returns=[[50.0, 40.0], [3.0, 4.0]],
                                     config={"x": 1, "workdir": "runs/b"})
    b["tasks"]["t"] = {"bremen": dict(_entry([400, 800], [0, 1], 2), wall_s=[5.0],
                                      returns=[[10.0, 30.0], [1.0, 2.0]],
                                      config={"x": 1, "workdir": "runs/a"})}
    e = lr.merge([a, b], pool=True)["tasks"]["t"]["bremen"]
    assert e["seeds"] == [0, 1, 5, 6] and e["returns"] == [[10, 30, 50, 40], [1, 2, 3, 4]]
    assert e["wall_s"] == [5.0, 7.0]
    assert e["config"] == {"x": 1, "workdir": ["runs/a", "runs/b"]}
    assert lr.merge([a, b])["tasks"]["t"]["bremen"]["seeds"] == [0, 1]  # no --pool: replaced
    with pytest.raises(ValueError, match=r"t/sac: seeds \[0, 1\] are in two runs"):
        lr.merge([a, {**_doc(), "tasks": {"t": {"sac": _entry([400, 800], [0, 1])}}}],
                 pool=True)  # sac on seeds 0-1 in both
    b["tasks"]["t"]["bremen"]["config"]["x"] = 2
    with pytest.raises(ValueError, match=r"t/bremen: config differs in \['x'\]"):
        lr.merge([a, b], pool=True)
    b["tasks"]["t"]["bremen"]["deployments"] = 3
    with pytest.raises(ValueError, match="t/bremen: deployments differ"):
        lr.merge([a, b], pool=True)
    for name, doc in (("a", a), ("b", _doc())):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    out = tmp_path / "m.json"
    args = ["merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)]
    assert lr.main(args + ["--pool"]) == 2  # sac runs on seeds 0-1 in both: not disjoint
    assert lr.main(args) == 0


def test_summary_end_points_and_pooled_seeds(tmp_path, capsys):
    """Hand-computed: seeds 0-1 end at 1,000 and 2,000, seeds 5-6 at 1,500 and 20 (seed 6 falls
    from 40 at the first count)."""
    a, b = _doc(), _doc()
    a["tasks"]["t"]["bremen"]["returns"] = [[10.0, 30.0], [1000.0, 2000.0]]
    b["tasks"]["t"] = {"bremen": dict(_entry([400, 800], [5, 6], 2),
                                      returns=[[50.0, 40.0], [1500.0, 20.0]])}
    rows = lr.summary_rows([a, b], "t", 1500.0)
    assert [(r["algorithm"], r["seeds"], r["pooled"]) for r in rows] == [
        ("bremen", [0, 1], False), ("sac", [0, 1], False), ("bremen", [5, 6], False),
        ("bremen", [0, 1, 5, 6], True)]
    first, _, held_out, pooled = rows
    assert first["final"] == [1000.0, 2000.0] and first["mean"] == 1500.0
    assert first["std"] == pytest.approx(math.sqrt(500_000.0))     # sample std of 1,000, 2,000
    assert (first["at_least"], first["second_above_first"]) == (1, 2)
    assert (held_out["at_least"], held_out["second_above_first"]) == (1, 1)   # 40 -> 20
    assert pooled["final"] == [1000.0, 2000.0, 1500.0, 20.0] and pooled["mean"] == 1130.0
    # deviations -130, 870, 370, -1,110: sum of squares 2,142,800 / 3 -> std 845.1
    assert pooled["std"] == pytest.approx(math.sqrt(2_142_800 / 3))
    assert (pooled["at_least"], pooled["second_above_first"], pooled["samples"]) == (2, 3, 800)
    table = lr.summary_table(rows, 1500.0)
    assert "| bremen (pooled) | 0,1,5,6 | 800 | 1,130.0 ± 845.1 | 1,000, 2,000, 1,500, 20 " \
           "| 2/4 | 3/4 |" in table
    # The same seeds in two documents are not pooled (one run counted twice).
    assert not any(r["pooled"] for r in lr.summary_rows([a, a], "t", 1500.0))
    for name, doc in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    out = tmp_path / "s.md"
    assert lr.main(["summary", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--task", "t",
                    "--out", str(out)]) == 0
    assert out.read_text().strip() == capsys.readouterr().out.strip()
    assert lr.main(["summary", str(tmp_path / "a.json"), "--task", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no document has task 'nope'" in err[0]
    assert lr.main(["merge", str(tmp_path / "a.json")]) == 2
    assert "merge needs --out" in capsys.readouterr().err


def test_target_sets_count_five_seed_draws_by_hand(tmp_path, capsys):
    """Six seeds, 0-3 ending at or above 1,500 and 4-5 below. A set of 5 drops one seed, so it
    holds >= 4 high seeds only when it drops seed 4 or 5: 2 of the C(6,5) = 6 sets when every seed
    rises, 0 when high seed 3 does not rise (it must then be dropped too: no set is left)."""
    above = np.array([1, 1, 1, 1, 0, 0], bool)
    rising = np.array([1, 1, 1, 0, 1, 1], bool)
    assert lr.target_sets(above, np.ones(6, bool), 5, 4) == (2, 6)
    assert lr.target_sets(above, rising, 5, 4) == (0, 6)
    assert lr.target_sets(above, np.ones(6, bool), 5, 3) == (6, 6)
    assert lr.target_sets(above[:4], rising[:4], 5, 4) is None
    # quick_tuned's pooled seeds 0-9 (README): below 1,500 seeds 2 and 5, not rising 1 and 8:
    # rising and above 6 seeds, rising and below 2 -> C(6,4) C(2,1) + C(6,5) = 36 of C(10,5) = 252.
    above = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 1], bool)
    rising = np.array([1, 0, 1, 1, 1, 1, 1, 1, 0, 1], bool)
    assert lr.target_sets(above, rising, 5, 4) == (36, 252)
    # The same through the summary: two 5-seed documents (three sample counts), pooled into 10.
    docs = []
    for first in (0, 5):
        sl = slice(first, first + 5)
        returns = [[0.0] * 5, [100.0 if r else -100.0 for r in rising[sl]],
                   [2000.0 if x else 0.0 for x in above[sl]]]
        e = dict(_entry([400, 800, 1200], list(range(first, first + 5)), 3), returns=returns)
        docs.append(dict(_doc(), tasks={"t": {"bremen": e}}))
    rows = lr.summary_rows(docs, "t", 1500.0)
    assert [r["target_sets"] for r in rows] == [(0, 1), (0, 1), (36, 252)]
    table = lr.summary_table(rows, 1500.0)
    assert "| 4/5 | 4/5 | 0/1 (0%) |" in table and "| 8/10 | 8/10 | 36/252 (14%) |" in table
    (tmp_path / "a.json").write_text(json.dumps(docs[0]))
    assert lr.main(["summary", str(tmp_path / "a.json"), "--task", "t", "--need", "6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 1 <= need <= set-size" in err[0]


def test_paired_differences_by_hand(tmp_path, capsys):
    """Reference "base" on seeds 0-3 (two documents, pooled) ending 1,000 / 2,000 / 500 / 300;
    "opt" on seeds 1-4 ending 2,000 / 900 / 300 / 50 (seed 4 only its own): shared seeds 1-3,
    differences 0, +400, 0 -> identical 2, higher 1, lower 0, mean 133.3, sample std 230.9,
    SE 230.9 / sqrt(3) = 133.3."""
    def doc(algo, seeds, finals):
        e = dict(_entry([400, 800], seeds, 2), returns=[[0.0] * len(seeds), finals])
        return dict(_doc(), tasks={"t": {algo: e}})
    docs = [doc("base", [0, 1], [1000.0, 2000.0]), doc("base", [2, 3], [500.0, 300.0]),
            doc("opt", [1, 2, 3, 4], [2000.0, 900.0, 300.0, 50.0])]
    rows = lr.summary_rows(docs, "t", 1500.0)
    (p,) = lr.paired_rows(rows, "base")
    assert (p["algorithm"], p["seeds"], p["differences"]) == ("opt", [1, 2, 3], [0.0, 400.0, 0.0])
    assert (p["identical"], p["higher"], p["lower"]) == (2, 1, 0)
    assert p["mean"] == pytest.approx(400 / 3)
    # deviations -400/3, 800/3, -400/3: sample variance 160,000 / 3 -> SE sqrt(160,000 / 9)
    assert p["se"] == pytest.approx(400 / 3)
    table = lr.paired_table([p], "base")
    assert "| opt | 3 | 2 | 1 | 0 | +133.3 ± 133.3 | 2: +400 |" in table
    with pytest.raises(ValueError, match="no row of algorithm 'nope'"):
        lr.paired_rows(rows, "nope")
    for i, d in enumerate(docs):
        (tmp_path / f"{i}.json").write_text(json.dumps(d))
    files = [str(tmp_path / f"{i}.json") for i in range(3)]
    assert lr.main(["summary", *files, "--task", "t", "--paired-with", "base"]) == 0
    assert "| opt | 3 | 2 | 1 | 0 | +133.3 ± 133.3 | 2: +400 |" in capsys.readouterr().out
    assert lr.main(["summary", *files, "--task", "t", "--paired-with", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no row of algorithm 'nope'" in err[0]


def test_unpaired_comparison_by_hand(tmp_path, capsys):
    """Reference "bremen" on seeds 0-1 ending 1,000 / 1,300 (mean 1,150, sample variance 45,000);
    "sac" on seeds 5-6 ending 2,000 / 2,400 (mean 2,200, variance 80,000): difference +1,050,
    Welch SE sqrt(45,000 / 2 + 80,000 / 2) = sqrt(62,500) = 250, z = 4.2; both sac seeds end
    above both bremen seeds: P(above) = 4 / 4 = 1 and the exact two-sided Mann-Whitney p is 2 of
    the C(4, 2) = 6 equally likely rank orders, 1 / 3; "ppo" ran another sample budget and is
    left out. Then ranks with a tie: sac 1,000 / 1,500 against bremen 1,000 / 1,300 has 2.5 of
    4 pairs above (1,500 > both, 1,000 = 1,000 counts half)."""
    def doc(algo, seeds, finals, samples=(400, 800)):
        e = dict(_entry(list(samples), seeds, 2), returns=[[0.0] * len(seeds), finals])
        return dict(_doc(), tasks={"t": {algo: e}})
    docs = [doc("bremen", [0, 1], [1000.0, 1300.0]), doc("sac", [5, 6], [2000.0, 2400.0]),
            doc("ppo", [0, 1], [5.0, 6.0], samples=(400, 900))]
    rows = lr.summary_rows(docs, "t", 1500.0)
    (c,) = lr.compared_rows(rows, "bremen")
    assert (c["algorithm"], c["n"], c["reference_n"]) == ("sac", 2, 2)
    assert (c["mean"], c["median"], c["reference_mean"], c["reference_median"]) == (
        2200.0, 2200.0, 1150.0, 1150.0)
    assert c["difference"] == pytest.approx(1050.0)
    assert c["se"] == pytest.approx(250.0) and c["z"] == pytest.approx(4.2)
    assert c["p_above"] == 1.0 and c["mw_p"] == pytest.approx(1 / 3)
    line = ("| sac | 2 | 2,200.0 ± 282.8 (2,200) | 1,150.0 over 2 (1,150) | +1,050.0 ± 250.0 "
            "| +4.20 | 1.00 | 0.33 |")
    assert line in lr.compared_table([c], "bremen")
    tied = lr.summary_rows([docs[0], doc("sac", [5, 6], [1000.0, 1500.0])], "t", 1500.0)
    assert lr.compared_rows(tied, "bremen")[0]["p_above"] == pytest.approx(2.5 / 4)
    for i, d in enumerate(docs):
        (tmp_path / f"{i}.json").write_text(json.dumps(d))
    files = [str(tmp_path / f"{i}.json") for i in range(3)]
    assert lr.main(["summary", *files, "--task", "t", "--compare-with", "bremen"]) == 0
    assert line in capsys.readouterr().out
    assert lr.main(["summary", *files, "--task", "t", "--compare-with", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compare: no row of algorithm 'nope'" in err[0]


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="Linux only")
def test_memory_maps_counts_a_new_file_mapping(tmp_path):
    """The tuning log's map count (LLVM's code mappings exhaust vm.max_map_count on long grids)
    sees one more mapping while a file is mapped, and one less after."""
    import mmap

    f = tmp_path / "page"
    f.write_bytes(b"\0" * mmap.PAGESIZE)
    before = lb.memory_maps()
    with f.open("r+b") as fh, mmap.mmap(fh.fileno(), mmap.PAGESIZE) as m:
        m[0] = 1
        during = lb.memory_maps()
    after = lb.memory_maps()
    assert during >= before + 1 and after <= during - 1  # other threads may map meanwhile


def test_every_variant_applies_and_validates_on_the_cpu_and_quick_protocols():
    """A typo in a variant's override (a field or a value) is found here, not an hour into a
    learning run; each variant sets every field it names on the cpu and quick protocols' configs
    (the tiny protocol's 50-step episodes are shorter than the H = 500 variants' horizon)."""
    from bremen_jax import config as config_lib

    for proto in (lc.PROTOCOLS["cpu"], lc.PROTOCOLS["quick"], lc.PROTOCOLS["quick_b32k"]):
        for spec in proto["tasks"].values():
            for name, extra in lc.BREMEN_VARIANTS.items():
                cfg = lc.bremen_config({**spec, "overrides": spec["overrides"] + extra})
                flat = config_lib.flatten(cfg)
                for o in extra:
                    assert o.split("=", 1)[0] in flat, (name, o)
    i20k = config_lib.flatten(lc.bremen_config(
        {"config": "quick", "overrides": lc.BREMEN_VARIANTS[
            "bremen_sampling_kl01_budget10_dis1_b32k_i20k"]}))
    # i20k adds to the default of 2026-12-04 (the _b32k variant; quick_tuned has since also the
    # original's patience and H = 250 with a 100-step warm-up, the _b32k_p20_h250w100 variant)
    tuned = config_lib.flatten(lc.bremen_config(
        {"config": "quick", "overrides": lc.BREMEN_VARIANTS[
            "bremen_sampling_kl01_budget10_dis1_b32k"]}))
    assert {k for k in tuned if tuned[k] != i20k[k]} == {"imagine.batch_size"}
    now = config_lib.flatten(config_lib.load_config("quick_tuned"))
    assert {k for k in now if now[k] != tuned[k]} == {
        "dynamics.patience", "imagine.horizon", "imagine.warmup_horizon",
        "imagine.warmup_deployments"}
    assert i20k["imagine.batch_size"] == 2 * tuned["imagine.batch_size"] == 20_000


def test_quick_b32k_protocol_gives_the_baselines_bremen_trains_budget():
    """SAC/PPO under --protocol quick_b32k get K x B real steps from the protocol's config: the
    default `bremen train` config's 5 x 32,000 = 160,000 (quick: 80,000)."""
    from bremen_jax import config as config_lib

    spec = lc.PROTOCOLS["quick_b32k"]["tasks"]["halfcheetah"]
    cfg = lc.bremen_config(spec)
    tuned = config_lib.load_config("quick_tuned")
    got = (int(cfg.deploy.num_deployments), int(cfg.deploy.batch_size))
    assert got == (int(tuned.deploy.num_deployments), int(tuned.deploy.batch_size)) == (5, 32_000)
    quick = lc.bremen_config(lc.PROTOCOLS["quick"]["tasks"]["halfcheetah"])
    assert int(quick.deploy.batch_size) * 2 == got[1]


def test_plot_marks_the_deployments_of_any_bremen_variant(tmp_path, monkeypatch):
    """The dotted deployment lines are drawn for a variant name too (once, at its 2 sample
    counts), not only for the algorithm called ``bremen``; SAC's entry adds none."""
    saved = []
    monkeypatch.setattr(lr, "_save", lambda fig, path, **kw: saved.append(fig))
    algos = {"bremen_sampling_x": _entry([400, 800], [0, 1], 2), "sac": _entry([400, 800], [0, 1])}
    lr.plot_task("t", algos, tmp_path / "t.png")
    ax1 = saved[0].axes[0]
    dotted = [ln for ln in ax1.get_lines() if ln.get_linestyle() == ":"]
    assert sorted(ln.get_xdata()[0] for ln in dotted) == [400, 800]


def test_plot_legend_sits_below_the_panels(tmp_path, monkeypatch):
    """One figure legend (every algorithm once), none inside a panel, where it hid the top of
    SAC's band; the layout keeps a strip at the bottom for it."""
    saved = []
    monkeypatch.setattr(lr, "_save", lambda fig, path, **kw: saved.append((fig, kw)))
    algos = {f"bremen_v{i}": _entry([400, 800], [0, 1], 2) for i in range(4)}
    algos["sac"] = _entry([400, 800], [0, 1])
    lr.plot_task("t", algos, tmp_path / "t.png")
    fig, kw = saved[0]
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 5 and all(t.startswith(a + " ") for a, t in zip(algos, texts)), texts
    assert 0 < kw["bottom"] < 0.3
