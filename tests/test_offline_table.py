"""``experiments.offline_table --data-seed``: which file a dataset draw goes to, and its checks."""

import pytest

from experiments import offline_table


def _fake_collect(calls):
    def collect(task, policy, noise, rows, path, *, seed=0):
        calls.append({"task": task, "rows": rows, "path": path.name, "seed": seed})
        path.write_bytes(b"")  # the file now exists, as after a real collection
        return {"behavior_return": 1.5, "seed": seed, "timing": {}}
    return collect


def test_data_seed_names_the_file_and_seeds_the_collection(tmp_path, monkeypatch, capsys):
    from bremen_jax.datasets import make

    calls = []
    monkeypatch.setattr(make, "collect_dataset", _fake_collect(calls))
    args = offline_table._parse(["--data-seed", "3", "--policy", "medium", "--noise", "pure"])
    path, info = offline_table._dataset("hopper", args, 1000, tmp_path)
    assert path == tmp_path / "hopper-medium-pure-1000-dataseed3.npz"
    assert calls == [{"task": "hopper", "rows": 1000, "path": path.name, "seed": 3}]
    assert info["seed"] == 3
    # seed 0 keeps the name the earlier tables used
    path0, _ = offline_table._dataset("hopper", offline_table._parse([]), 1000, tmp_path)
    assert path0.name == "hopper-medium-pure-1000.npz" and calls[-1]["seed"] == 0
    assert offline_table._header(args, "2026-12-06")["data_seed"] == 3


def test_a_file_of_another_seed_is_refused_not_reused(tmp_path, monkeypatch):
    from bremen_jax.data import dataset
    from bremen_jax.datasets import make

    calls = []
    monkeypatch.setattr(make, "collect_dataset", _fake_collect(calls))
    monkeypatch.setattr(dataset, "dataset_info", lambda p: {"seed": 0, "behavior_return": 1.0,
                                                              "timing": {}})
    (tmp_path / "hopper-medium-pure-1000-dataseed2.npz").write_bytes(b"")
    args = offline_table._parse(["--data-seed", "2"])
    with pytest.raises(SystemExit, match="collected with seed 0, expected --data-seed 2"):
        offline_table._dataset("hopper", args, 1000, tmp_path)
    assert calls == []  # nothing collected, nothing overwritten
    # the same seed is reused without collecting again
    monkeypatch.setattr(dataset, "dataset_info", lambda p: {"seed": 2, "behavior_return": 1.0,
                                                              "timing": {}})
    _, info = offline_table._dataset("hopper", args, 1000, tmp_path)
    assert info["seed"] == 2 and calls == []


@pytest.mark.parametrize("bad", ["-1", "x", "1.5"])
def test_a_bad_data_seed_is_a_one_line_error(bad, capsys):
    with pytest.raises(SystemExit) as e:
        offline_table._parse(["--data-seed", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--data-seed" in err and "expected an integer >= 0" in err
