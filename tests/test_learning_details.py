"""experiments/learning_details.py: the per-deployment table of a sweep, from a hand-made npz."""

import numpy as np
import pytest

from experiments import learning_details as ld


def _write(tmp_path, with_gap=True):
    R, K, C, I = 2, 2, 2, 3
    ev = np.zeros((R, K, C))
    ev[:, :, -1] = [[10.0, 30.0], [20.0, 50.0]]             # after TRPO: d1 15 ± 7.1, d2 40 ± 14.1
    ev[:, 0, 0] = [14.0, 20.0]              # d1's best chunk: 14 and 20 -> lost 4 and 0: 2.0 ± 2.8
    m = {"eval|eval/return_mean": ev,
         "preamble|bc_eval/return_mean": np.array([[1.0, 2.0], [3.0, 4.0]]),
         "improve|imagined_return": np.full((R, K, C, I), 5.0),
         "improve|trpo/improvement": np.array([1e3, 1e30, 1e31] * (R * K * C)).reshape(R, K, C, I),
         "improve|trpo/ls_frac": np.full((R, K, C, I), 0.25),
         "improve|kl_to_behavior": np.arange(R * K * C * I, dtype=float).reshape(R, K, C, I)}
    if with_gap:  # newer runs: the model gap, the scored KL and the budget flags
        m["eval|eval/model_gap"] = np.ones((R, K, C))
        m["improve|kl_to_behavior_scored"] = np.full((R, K, C, I), 9.0)
        over = np.zeros((R, K, C, I), np.int32)
        over[0, 0].flat[2:] = 1       # run 0, d1: over from its 3rd of 6 iterations; run 1 never
        over[1, 1, 1, 2] = 1          # run 1, d2: only its last (6th) iteration
        m["improve|trpo/over_kl_budget"] = over
    np.savez(tmp_path / "metrics_outer0.npz", **m)
    return tmp_path


def test_table_by_hand(tmp_path):
    rows = ld.deployment_table(ld.load(_write(tmp_path)))
    assert rows[0] == {"deployment": "1", "BC init": "2.0 ± 1.4", "after TRPO": "15.0 ± 7.1",
                       "imagined (last it.)": "5.0 ± 0.0", "model gap": "1.0 ± 0.0",
                       "median improvement": "1e+30", "mean step fraction": "0.250",
                       # d1's last iteration: entries 5 (run 0) and 17 (run 1) -> median 11
                       "best chunk − last": "2.0 ± 2.8", "KL to clone (last it.)": "11",
                       # 4 of the 2 x 6 iterations over the budget; run 0 first at its 3rd
                       "KL scored (last it.)": "9", "over KL budget": "0.33",
                       "first over budget (it.)": "3 (1/2 runs)"}
    assert rows[1]["after TRPO"] == "40.0 ± 14.1" and rows[1]["BC init"] == "3.0 ± 1.4"
    assert rows[1]["best chunk − last"] == "0.0 ± 0.0"
    assert rows[1]["over KL budget"] == "0.08"                  # 1 of 12
    assert rows[1]["first over budget (it.)"] == "6 (1/2 runs)"
    assert "KL latest (last it.)" not in rows[0]          # logged only by latest / max runs


def test_latest_batch_kl_column(tmp_path):
    _write(tmp_path)
    m = ld.load(tmp_path)
    lat = np.zeros((2, 2, 2, 3))
    lat[:, 1, -1, -1] = [4.0, 40.0]                       # d2's last iteration: median 22
    m["improve|kl_to_behavior_latest"] = lat
    rows = ld.deployment_table(m)
    assert rows[0]["KL latest (last it.)"] == "0" and rows[1]["KL latest (last it.)"] == "22"


def test_a_budget_never_reached():
    over = np.zeros((2, 1, 2, 3))
    assert ld._first_over(over, 0) == "never"


def test_old_runs_without_the_gap_and_a_missing_sweep(tmp_path, capsys):
    rows = ld.deployment_table(ld.load(_write(tmp_path, with_gap=False)))
    assert rows[0]["model gap"] == "–"
    assert rows[0]["KL scored (last it.)"] == rows[0]["over KL budget"] == "–"
    assert rows[0]["first over budget (it.)"] == "–"
    assert ld.main([str(tmp_path / "nowhere")]) == 2
    assert "holds no sweep metrics" in capsys.readouterr().err
    out = tmp_path / "t.md"
    assert ld.main([str(tmp_path), "--out", str(out)]) == 0
    assert "| deployment | BC init |" in out.read_text()


def test_pooled_clone_table_by_hand(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    rows = ld.clone_table([ld.load(_write(a)), ld.load(_write(b))])
    # clones [[1, 2], [3, 4]] twice; after TRPO [[10, 30], [20, 50]] twice
    # d1: TRPO - clone 9, 17, 9, 17 -> +13, std 4.62 / 2 = 2.31; d2: 28, 46 -> +37 ± 5.2
    assert rows[0] == {"deployment": "1", "clone": "2.0", "after TRPO": "15.0",
                       "TRPO above the clone": "4/4", "TRPO − clone (± SE)": "+13 ± 2",
                       "clone − deployed before (± SE)": "–"}
    assert rows[1]["TRPO − clone (± SE)"] == "+37 ± 5"
    # d2's clone against d1's policy: 2 - 10, 4 - 20 -> -8, -16 (twice): -12, 4.62 / 2
    assert rows[1]["clone − deployed before (± SE)"] == "-12 ± 2"
    assert ld.main([str(a), str(b), "--pool"]) == 0
    assert "**pooled: TRPO against the clone** (4 runs)" in capsys.readouterr().out
    m = ld.load(a)
    m["eval|eval/return_mean"] = m["eval|eval/return_mean"][:, :1]
    m["preamble|bc_eval/return_mean"] = m["preamble|bc_eval/return_mean"][:, :1]
    with pytest.raises(ValueError, match=r"one number of deployments, got \[1, 2\]"):
        ld.clone_table([m, ld.load(b)])


def test_paired_runs_first_difference_by_hand(tmp_path, capsys):
    """Base sweep: seeds [4, 3, 9]; this sweep: seeds [3, 4], a copy of base's runs 1 and 0 except
    seed 4's deployment 2, chunk 2, iteration 2 (its 5th of 6), where the KL budget skipped the
    step in this sweep only, and seed 4's return after deployment 2 (30 -> 80). Then seed 3's
    deployment-2 clone is changed: its first difference becomes deployment 2's preamble."""
    base = ld.load(_write(tmp_path))
    R = 3
    base = {k: np.concatenate([v, v[:1]]) for k, v in base.items()}     # a third run (seed 9)
    base["seeds"] = np.array([4, 3, 9])
    base["improve|kl_to_behavior_scored"] = np.arange(R * 2 * 2 * 3, dtype=float).reshape(
        R, 2, 2, 3)
    this = {k: v[[1, 0]].copy() for k, v in base.items()}
    this["seeds"] = np.array([3, 4])
    this["improve|trpo/over_kl_budget"][1, 1, 1, 1] = 1
    this["eval|eval/return_mean"][1, 1, -1] = 80.0
    this["improve|kl_to_behavior_latest"] = np.full((2, 2, 2, 3), 7.0)   # logged by this only
    rows = ld.divergence_table(this, base)
    assert [r["seed"] for r in rows] == ["3", "4"]
    assert rows[0]["first difference"] == "identical" and rows[0]["last − base"] == "+0"
    # base run 0 (seed 4), deployment 2 (index 1): KLs 6..11, the 5th is 10
    assert rows[1] == {"seed": "4", "first difference": "D2 it. 5", "KL imagined": "10.0",
                       "KL latest": "7.0", "over budget (this / base)": "1 / 0",
                       "after each deployment": "10, 80", "base": "10, 30",
                       "last − base": "+50"}
    this["preamble|bc_eval/return_mean"][0, 1] = -1.0
    assert ld.divergence_table(this, base)[0]["first difference"] == "D2 preamble"
    with pytest.raises(ValueError, match="no seed in both sweeps"):
        ld.divergence_table(dict(this, seeds=np.array([7, 8])), base)
    # The command line, on the two sweeps written out; a sweep without seeds is one line.
    for name, m in (("this", this), ("base", base)):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "metrics_outer0.npz", **m)
    assert ld.main([str(tmp_path / "this"), "--against", str(tmp_path / "base")]) == 0
    assert "| 4 | D2 it. 5 | 10.0 | 7.0 | 1 / 0 | 10, 80 | 10, 30 | +50 |" in \
        capsys.readouterr().out
    assert ld.main([str(tmp_path), "--against", str(tmp_path / "base")]) == 2   # no seeds logged
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "log their seeds" in err[0]


def test_an_unfinished_sweep_is_read_from_its_partial_metrics(tmp_path, capsys):
    """A sweep run with --checkpoint-every that has not finished holds only
    metrics_outer0.partial.npz (its deployments done): the tables cover those, the title says
    so, and --against pairs them with the base's same first deployments."""
    (tmp_path / "base").mkdir()
    base = ld.load(_write(tmp_path / "base"))
    base["seeds"] = np.array([0, 1])
    np.savez(tmp_path / "base" / "metrics_outer0.npz", **base)
    part = {k: (v[:, :1] if "|" in k else v) for k, v in base.items()}   # deployment 1 only
    part["eval|eval/return_mean"] = part["eval|eval/return_mean"] + 5.0
    (tmp_path / "run").mkdir()
    np.savez(tmp_path / "run" / "metrics_outer0.partial.npz", **part)
    assert ld.metrics_file(tmp_path / "run") == (tmp_path / "run" / "metrics_outer0.partial.npz",
                                                 True)
    rows = ld.deployment_table(ld.load(tmp_path / "run"))
    assert [r["deployment"] for r in rows] == ["1"] and rows[0]["after TRPO"] == "20.0 ± 7.1"
    pairs = ld.divergence_table(ld.load(tmp_path / "run"), base)
    assert [(r["seed"], r["after each deployment"], r["base"], r["last − base"])
            for r in pairs] == [("0", "15", "10", "+5"), ("1", "25", "20", "+5")]
    assert ld.main([str(tmp_path / "run"), "--against", str(tmp_path / "base")]) == 0
    out = capsys.readouterr().out
    assert "**run (unfinished: deployments 1-1 so far)** (2 runs)" in out
    # A finished file wins over a partial one left behind; neither is one line naming both.
    assert ld.metrics_file(tmp_path / "base")[1] is False
    assert ld.main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics_outer0.npz" in err[0] and "partial" in err[0]
