"""experiments/offline_pool.py: offline tables pooled over dataset draws, by hand."""

import json

import pytest

from experiments import offline_pool as op

REFS = {"random": -100.0, "expert": 100.0}     # score = (R + 100) / 2


def _row(size, final, bc, behavior):
    return {"task": "hopper", "size": size, "seeds": list(range(len(final))),
            "reference_returns": REFS, "behavior_return": behavior,
            "returns": {"bremen_final": final, "bc": bc}}


# draw 1: BREMEN 20, 30 / BC 15, 25 / behaviour 18; draw 2: BREMEN 10, 10 / BC 5, 15 / behaviour 20
DOCS = [{"rows": [_row(1000, [-60.0, -40.0], [-70.0, -50.0], -64.0),
                  _row(50, [-40.0], [-60.0], -100.0)]},
        {"rows": [_row(1000, [-80.0, -80.0], [-90.0, -70.0], -60.0)]}]


def test_pool_by_hand():
    big, small = op.pool(DOCS)
    assert (big["draws"], big["n"]) == (2, 4)
    assert big["bremen"] == pytest.approx([20, 30, 10, 10])
    assert big["bc"] == pytest.approx([15, 25, 5, 15])
    assert big["behavior"] == pytest.approx([18, 20])
    # diffs 5, 5, 5, -5: mean 2.5, sample std 5, se 2.5
    assert big["diff_mean"] == pytest.approx(2.5) and big["diff_se"] == pytest.approx(2.5)
    assert not big["meets"]          # 17.5 ≥ BC's 15 but below draw 2's behaviour (20)
    assert small["meets"] and small["n"] == 1 and small["diff_se"] == 0.0


def test_markdown_and_errors(tmp_path, capsys):
    text = op.markdown(op.pool(DOCS))
    assert ("| hopper | 1,000 | 2 × 2 | 18.0, 20.0 | 15.0 ± 8.2 | 17.5 ± 9.6 | +2.50 ± 2.50 "
            "| missed |") in text
    assert ("| hopper | 50 | 1 × 1 | 0.0 | 20.0 ± 0.0 | 30.0 ± 0.0 | +10.00 ± 0.00 "
            "| met |") in text
    files = []
    for i, doc in enumerate(DOCS):
        files.append(tmp_path / f"t{i}.json")
        files[-1].write_text(json.dumps(doc))
    out = tmp_path / "pool.md"
    assert op.main([str(f) for f in files] + ["--out", str(out)]) == 0
    assert out.read_text() == text and capsys.readouterr().out == text
    with pytest.raises(SystemExit, match=r"table 1, hopper 1,000 rows: no 'bremen_mean' report"):
        op.main([str(files[0]), "--report", "bremen_mean"])
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="hold no rows"):
        op.main([str(empty)])
