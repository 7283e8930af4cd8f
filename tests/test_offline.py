"""Offline BREMEN end to end (the host driver on one deployment), its resume, and the
``bremen offline`` command's errors."""

import json

import jax
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.run import run_offline
from bremen_jax.run.logs import read_jsonl
from bremen_jax.cli import main
from bremen_jax.datasets import scores
from bremen_jax.envs.acting import (flatten_env_major, make_collector, summarize_episodes,
                                     uniform_random_policy)
from bremen_jax.data.dataset import save_dataset
from bremen_jax.envs import make_task

# Small but real: inverted_pendulum (generalized backend), a random behaviour policy.
OFFLINE_OVERRIDES = [
    "episode_length=1000", "backend='generalized'", "dynamics.hidden_sizes=(64,64)",
    "dynamics.batch_size=100", "dynamics.max_epochs=60", "dynamics.eval_every=5",
    "dynamics.patience=20", "bc.num_steps=2000", "bc.batch_size=64",
    "policy.hidden_sizes=(32,32)", "imagine.horizon=100", "imagine.batch_size=3000",
    "trpo.iterations=60", "trpo.chunk=20", "trpo.target_kl=0.05", "eval.num_episodes=5",
]


def _random_dataset(path, task, num_envs, num_steps, seed=0):
    collect = jax.jit(make_collector(task, uniform_random_policy(task.action_size), num_envs,
                                     num_steps))
    tr, stats = collect(None, jax.random.key(seed))
    behavior = float(summarize_episodes(stats)["return_mean"])
    tr = jax.tree.map(np.asarray, flatten_env_major(tr))
    save_dataset(path, tr, {"task": task.name, "behavior_policy": "uniform random",
                            "behavior_return": behavior})
    return behavior


@pytest.mark.slow
def test_offline_bremen_beats_behavior_and_bc(tmp_path):
    cfg = config_lib.apply_overrides(config_lib.load_config("test"), OFFLINE_OVERRIDES)
    task = make_task("inverted_pendulum", backend="generalized", episode_length=1000)
    behavior = _random_dataset(tmp_path / "ds.npz", task, 20, 500)
    summary = run_offline(cfg, tmp_path / "ds.npz", tmp_path / "run", progress=False,
                          score_fn=scores.scores_or_none).summary
    assert summary["behavior_return"] == pytest.approx(behavior)
    best_baseline = max(behavior, summary["bc_return"])
    # Measured on CPU: behaviour ~5.7, BC ~17, BREMEN ~50 after 40-60 iterations.
    assert summary["bremen_return"] > 1.5 * best_baseline + 10, summary
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["bremen_returns"] == summary["bremen_returns"]
    r_rand, r_exp = scores.reference_returns("inverted_pendulum")
    assert written["normalized_scores"]["bremen"] == pytest.approx(
        100 * (summary["bremen_return"] - r_rand) / (r_exp - r_rand))
    chunks = read_jsonl(tmp_path / "run" / "chunks.jsonl")
    assert [r["iteration"] for r in chunks] == [20, 40, 60]
    assert [r["eval/return_mean"] for r in chunks] == summary["bremen_returns"]
    (dep,) = read_jsonl(tmp_path / "run" / "deployments.jsonl")
    assert dep["bc_return"] == summary["bc_return"] and dep["env_steps"] == 20 * 500


def test_offline_cli_smoke_and_errors(tmp_path, capsys):
    task = make_task("inverted_pendulum", backend="positional", episode_length=50)
    _random_dataset(tmp_path / "ds.npz", task, 8, 50)
    work = tmp_path / "run"
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "ds.npz"),
               "--workdir", str(work), "--config.trpo.iterations=2", "--config.trpo.chunk=2"])
    assert rc == 0
    assert (work / "summary.json").exists() and (work / "chunks.csv").exists()
    assert (work / "checkpoints").is_dir() and json.loads((work / "run.json").read_text())[
        "kind"] == "offline"
    before = (work / "chunks.jsonl").read_text()
    # A second run in the same work directory is refused and nothing is overwritten.
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "ds.npz"),
               "--workdir", str(work)])
    assert rc == 2 and "already holds a run" in capsys.readouterr().err
    assert (work / "chunks.jsonl").read_text() == before
    # Resuming the finished offline run does nothing; `bremen train --resume` refuses it.
    assert main(["offline", "--resume", "--workdir", str(work), "--no-progress"]) == 0
    assert (work / "chunks.jsonl").read_text() == before
    capsys.readouterr()
    assert main(["train", "--resume", "--workdir", str(work)]) == 2
    assert "bremen offline --resume" in capsys.readouterr().err
    # Wrong task for the dataset.
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "ds.npz"),
               "--workdir", str(tmp_path / "r2"), "--config.task=hopper"])
    assert rc == 2 and "task" in capsys.readouterr().err
    # Refused before anything was written: the work directory it created is gone again.
    assert not (tmp_path / "r2").exists()
    (tmp_path / "bad.npz").write_bytes(b"not a zip archive")
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "bad.npz"),
               "--workdir", str(tmp_path / "new" / "r5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a bremen_jax dataset" in err[0]
    assert not (tmp_path / "new").exists()
    # Bad override and missing dataset.
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "ds.npz"),
               "--workdir", str(tmp_path / "r3"), "--config.trpo.horizon=5"])
    assert rc == 2 and "unknown config field 'trpo.horizon'" in capsys.readouterr().err
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "nope.npz"),
               "--workdir", str(tmp_path / "r4")])
    assert rc == 2 and "nope.npz" in capsys.readouterr().err


def test_offline_interrupted_and_resumed_equals_whole_run(tmp_path):
    task = make_task("inverted_pendulum", backend="positional", episode_length=50)
    _random_dataset(tmp_path / "ds.npz", task, 8, 50)
    cfg = config_lib.apply_overrides(config_lib.load_config("test"), ["trpo.iterations=6"])
    whole = run_offline(cfg, tmp_path / "ds.npz", tmp_path / "whole", progress=False).summary
    part = run_offline(cfg, tmp_path / "ds.npz", tmp_path / "part", progress=False,
                       stop_at=(1, 1)).summary
    assert not part["finished"] and part["bremen_return"] is None
    resumed = run_offline(cfg, tmp_path / "ds.npz", tmp_path / "part", progress=False,
                          resume=True).summary
    assert resumed["finished"] and len(resumed["bremen_returns"]) == 3
    np.testing.assert_allclose(resumed["bremen_returns"], whole["bremen_returns"], rtol=1e-4)
    assert resumed["bc_return"] == pytest.approx(whole["bc_return"], rel=1e-4)
    # Every chunk row of the CSV carries its returns (not only the first row).
    import csv
    with open(tmp_path / "part" / "chunks.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["eval/return_mean"]) for r in rows] == pytest.approx(
        resumed["bremen_returns"], rel=1e-6)
