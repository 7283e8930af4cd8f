"""Offline sweeps (``bremen sweep --dataset``): seeds x points of offline BREMEN as one vmapped
program equal ``bremen offline`` (the host driver) run by run, the files name the dataset, and bad
input is refused in one line before anything is compiled or written.

The sweep is ``bremen_jax/configs/sweeps/test.py`` (2 points x 2 seeds of the ``test`` config,
``trpo.cg_damping`` 100 so that the batched and unbatched programs stay within float32 rounding
of each other over the run; see ``tests/test_sweep.py``) on a 400-row random-policy dataset of
the test task.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from bremen_jax import sweep
from bremen_jax.cli import main
from bremen_jax.data.dataset import save_dataset
from bremen_jax.envs import make_task
from bremen_jax.envs.acting import (flatten_env_major, make_collector, summarize_episodes,
                                     uniform_random_policy)
from bremen_jax.run import run_offline
from bremen_jax.sweep import spec as sweep_spec

TOL_PREAMBLE = 1e-4  # ensemble fit, BC and its evaluation: the same data, keys and arithmetic
TOL_RETURN = 5e-2    # chunk returns after TRPO: float32 rounding through 4 iterations


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """400 rows (8 episodes of 50 steps) of the uniform random policy on the test task."""
    task = make_task("inverted_pendulum", backend="positional", episode_length=50)
    collect = jax.jit(make_collector(task, uniform_random_policy(task.action_size), 8, 50))
    tr, stats = collect(None, jax.random.key(3))
    behavior = float(summarize_episodes(stats)["return_mean"])
    path = tmp_path_factory.mktemp("data") / "ds.npz"
    save_dataset(path, jax.tree.map(np.asarray, flatten_env_major(tr)),
                 {"task": task.name, "behavior_policy": "uniform random",
                  "behavior_return": behavior})
    return path, behavior


@pytest.fixture(scope="module")
def swept(dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("offline_sweep") / "out"
    return sweep.run_sweep("test", workdir, dataset=dataset[0])


@pytest.fixture(scope="module")
def plan():
    cfg, spec = sweep.load_sweep("test")
    return sweep.build_plans(cfg, spec)[0]


def _host_run(plan, r, dataset, workdir):
    cfg = sweep_spec.override(plan.point_cfgs[plan.point[r]], {"seed": int(plan.seeds[r])})
    return run_offline(cfg, dataset, workdir, progress=False)


@pytest.mark.parametrize("r", [0, 3])  # point 0 seed 0; point 1 seed 1
def test_offline_sweep_equals_bremen_offline(swept, plan, dataset, r, tmp_path):
    (metrics,) = swept.metrics
    ref = _host_run(plan, r, dataset[0], tmp_path / "host")
    (dep,) = ref.metrics
    run = jax.tree.map(lambda x: np.asarray(x)[r, 0], metrics)   # [R, K=1, ...] -> one run
    for name in ("dynamics/val_loss", "bc/loss", "bc_eval/return_mean"):
        np.testing.assert_allclose(run["preamble"][name], np.asarray(dep["preamble"][name]),
                                   rtol=TOL_PREAMBLE, atol=TOL_PREAMBLE, err_msg=name)
    sweep_returns = run["eval"]["eval/return_mean"]                  # [C]
    host_returns = np.asarray(ref.summary["bremen_returns"])
    assert sweep_returns.shape == host_returns.shape == (2,)
    scale = max(np.abs(host_returns).max(), 1.0)
    assert np.abs(sweep_returns - host_returns).max() <= TOL_RETURN * scale
    row = swept.rows[r]
    assert row["return_d1"] == pytest.approx(float(sweep_returns[-1]))
    assert row["bc_return_d1"] == pytest.approx(float(run["preamble"]["bc_eval/return_mean"]))
    assert row["mean_return"] == pytest.approx(float(sweep_returns.mean()))
    assert row["random_return"] is None  # nothing was collected


def test_offline_sweep_files_name_the_dataset(swept, dataset):
    path, behavior = dataset
    meta = json.loads((swept.workdir / "sweep.json").read_text())
    assert meta["finished"] and meta["offline"]["rows"] == 400
    assert meta["offline"]["path"] == str(path.resolve())
    assert meta["offline"]["behavior_return"] == pytest.approx(behavior)
    summary = json.loads((swept.workdir / "summary.json").read_text())
    assert summary["offline"]["behavior_return"] == pytest.approx(behavior)
    assert summary["offline"]["task"] == "inverted_pendulum"
    assert summary["offline"]["behavior_score"] is not None
    assert all(g["n"] == 2 and g["mean_return_mean"] is not None for g in summary["points"])
    assert "Offline on" in (swept.workdir / "summary.md").read_text()
    # The runs differ: seeds and points reach the program.
    finals = [row["return_d1"] for row in swept.rows]
    assert len(set(finals)) > 1 or len({row["bc_return_d1"] for row in swept.rows}) > 1


def test_offline_sweep_max_rows_and_bad_input(dataset, tmp_path, capsys):
    path, _ = dataset
    cfg, spec = sweep.load_sweep("test")
    plans = sweep.build_plans(cfg, spec)
    assert sweep.load_offline_data(plans, path, max_rows=200).size == 200
    assert sweep.load_offline_data(plans, path).size == 400
    with pytest.raises(sweep.SweepError, match="max_rows must be >= 1"):
        sweep.load_offline_data(plans, path, max_rows=0)
    # Fewer training rows than a minibatch: refused before compiling.
    with pytest.raises(Exception, match="fewer than dynamics.batch_size"):
        sweep.load_offline_data(plans, path, max_rows=40)
    # Outer values that change the task cannot share one dataset.
    spec2 = sweep.parse_sweep(cfg, {"seeds": 1, "outer": {"episode_length": [50, 60]}})
    with pytest.raises(sweep.SweepError, match="share task, backend and episode_length"):
        sweep.load_offline_data(sweep.build_plans(cfg, spec2), path)
    # CLI: one-line errors, nothing written.
    work = tmp_path / "w"
    assert main(["sweep", "--config", "test", "--workdir", str(work), "--max-rows", "10"]) == 2
    assert "--max-rows needs --dataset" in capsys.readouterr().err
    assert main(["sweep", "--config", "test", "--workdir", str(work),
                 "--dataset", str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert "missing.npz" in err and len(err.strip().splitlines()) == 1
    assert not work.exists() or not any(work.iterdir())


def test_offline_table_rows_from_a_sweep(swept, plan, dataset, tmp_path):
    """``experiments.offline_table --seeds``: per-seed returns, mean ± std (ddof 1), scores."""
    from experiments import offline_table

    # The sweep's 4 runs (2 points x 2 seeds) read as one row of 4 seeds.
    info = {"behavior_return": dataset[1]}
    row = offline_table._seeded_row("inverted_pendulum", 400, info, swept, plan.point_cfgs[0],
                                    {}, tmp_path, 12.0)
    finals = [r["return_d1"] for r in swept.rows]
    assert row["returns"]["bremen_final"] == finals
    assert row["return_stats"]["bremen_final"]["mean"] == pytest.approx(np.mean(finals), abs=0.01)
    assert row["return_stats"]["bremen_final"]["std"] == pytest.approx(
        np.std(finals, ddof=1), abs=0.01)
    assert row["returns"]["bremen_mean"] == [r["mean_return"] for r in swept.rows]
    assert len(row["evaluations"]) == 4 and len(row["evaluations"][0]) == 2
    assert row["scores"]["bc"][0] is not None and row["behavior_score"] is not None
    doc = {"seeds": 4, "protocol": "cpu-seeds", "device": "cpu", "date": "today", "rows": [row]}
    md = offline_table.markdown(doc)
    assert "| inverted_pendulum | 400 |" in md and md.splitlines()[-1].count("±") == 3
    assert row["model_pick_index"] is None and "bremen_model_pick" not in row["returns"]
    assert md.splitlines()[-1].count("| – |") == 1   # no estimate logged: no model pick


def test_model_picked_checkpoint_by_hand():
    """The checkpoint (0 = BC init, then each chunk's end) with the highest pessimistic model
    estimate gives the reported real return; a non-finite estimate is never picked."""
    from experiments.offline_table import model_picked

    nan = float("nan")
    metrics = {"preamble": {"bc_eval/return_mean": np.array([[10.0], [20.0], [30.0]]),
                            "bc_eval/model_return_min": np.array([[5.0], [1.0], [nan]])},
               "eval": {"eval/return_mean": np.array([[[11.0, 12.0]], [[21.0, 22.0]],
                                                      [[31.0, 32.0]]]),            # [R, K, C]
                        "eval/model_return_min": np.array([[[4.0, 3.0]], [[2.0, 7.0]],
                                                           [[nan, 0.5]]])}}
    assert model_picked(metrics) == ([10.0, 22.0, 32.0], [0, 2, 2])
    del metrics["eval"]["eval/model_return_min"]
    assert model_picked(metrics) is None
