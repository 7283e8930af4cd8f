"""experiments/offline_compare.py: paired differences of two offline tables, by hand."""

import json

import pytest

from experiments import offline_compare as oc

REFS = {"random": -100.0, "expert": 100.0}     # score = (R + 100) / 2


def _row(size, seeds, final, bc):
    return {"task": "hopper", "size": size, "seeds": seeds, "reference_returns": REFS,
            "returns": {"bremen_final": final, "bc": bc}}


def _docs(bc_b=(0.0, 0.0, 0.0)):
    # scores: row 1000: A 10, 20, 30 / B 8, 20, 25; row 50: A 5, 5, 5 / B 6, 4, 5
    a = {"rows": [_row(1000, [0, 1, 2], [-80.0, -60.0, -40.0], [0.0, 0.0, 0.0]),
                  _row(50, [0, 1, 2], [-90.0, -90.0, -90.0], [0.0, 0.0, 0.0]),
                  _row(20, [0, 1, 2], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])]}  # not in B: skipped
    b = {"rows": [_row(50, [0, 1, 2], [-88.0, -92.0, -90.0], list(bc_b)),
                  _row(1000, [0, 1, 2], [-84.0, -60.0, -50.0], [0.0, 0.0, 0.0])]}
    return a, b


def test_paired_by_hand():
    res = oc.paired(*_docs())
    r1, r2 = res["rows"]
    assert (r1["size"], r2["size"]) == (1000, 50)
    assert r1["a"] == pytest.approx([10, 20, 30]) and r1["b"] == pytest.approx([8, 20, 25])
    # d = 2, 0, 5: mean 7/3, sample var 19/3, se sqrt(19/9)
    assert r1["diff_mean"] == pytest.approx(7 / 3)
    assert r1["diff_se"] == pytest.approx(1.45297, abs=1e-4)
    assert r1["a_wins"] == 2 and r1["same_bc"]
    # d = -1, 1, 0: mean 0, var 1, se 1/sqrt(3)
    assert r2["diff_mean"] == pytest.approx(0.0)
    assert r2["diff_se"] == pytest.approx(0.57735, abs=1e-4)
    assert r2["a_wins"] == 1
    t = res["tasks"]["hopper"]            # d = 2, 0, 5, -1, 1, 0: mean 7/6, var 137/30
    assert t["n"] == 6 and t["a_wins"] == 3
    assert t["diff_mean"] == pytest.approx(7 / 6)
    assert t["diff_se"] == pytest.approx(0.87242, abs=1e-4)


def test_markdown_and_unpaired_bc():
    res = oc.paired(*_docs(bc_b=(0.0, 2.0, 0.0)))   # B: 8, 20, 25 -> std sqrt(229/3) = 8.7
    text = oc.markdown(res, ("ds", "reset"))
    row = ("| hopper | 1,000 | 50.0 ± 0.0 | 20.0 ± 10.0 | 17.7 ± 8.7 | +2.33 ± 1.45 | 2/3 "
           "| yes |")
    assert row in text
    assert text.split("| hopper | 50 |")[1].splitlines()[0].endswith("| NO |")  # BC differs
    assert "| hopper | all sizes | | | | +1.17 ± 0.87 | 3/6 | |" in text


def test_mismatched_seeds_and_bad_files(tmp_path, capsys):
    a, b = _docs()
    b["rows"][1]["seeds"] = [0, 1, 3]
    with pytest.raises(ValueError, match=r"hopper 1,000 rows: seeds differ"):
        oc.paired(a, b)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"task": "hopper"}]}))
    good = tmp_path / "a.json"
    good.write_text(json.dumps(_docs()[0]))
    with pytest.raises(SystemExit, match="not a seeded offline table"):
        oc.main([str(good), str(bad)])
    with pytest.raises(SystemExit, match="expected two names"):
        oc.main([str(good), str(good), "--labels", "only-one"])
    other = tmp_path / "o.json"
    other.write_text(json.dumps({"rows": [dict(_row(7, [0], [1.0], [1.0]), task="ant")]}))
    with pytest.raises(SystemExit, match="share no"):
        oc.main([str(good), str(other)])
    out = tmp_path / "t.md"
    assert oc.main([str(good), str(good), "--labels", "x,y", "--out", str(out)]) == 0
    assert "+0.00 ± 0.00 | 0/3 | yes |" in out.read_text()
    assert "A = x, B = y" in capsys.readouterr().out
