"""Offline BREMEN end to end, and the ``bremen offline`` command's errors."""

import json

import jax
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.algo.offline import run_offline
from bremen_jax.cli import main
from bremen_jax.data import scores
from bremen_jax.data.collect import (flatten_env_major, make_collector, summarize_episodes,
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
    summary = run_offline(cfg, tmp_path / "ds.npz", tmp_path / "run", log_fn=lambda s: None)
    assert summary["behavior_return"] == pytest.approx(behavior)
    best_baseline = max(behavior, summary["bc_return"])
    # Measured on CPU: behaviour ~5.7, BC ~17, BREMEN ~50 after 40-60 iterations.
    assert summary["bremen_return"] > 1.5 * best_baseline + 10, summary
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["bremen_returns"] == summary["bremen_returns"]
    r_rand, r_exp = scores.reference_returns("inverted_pendulum")
    assert written["normalized_scores"]["bremen"] == pytest.approx(
        100 * (summary["bremen_return"] - r_rand) / (r_exp - r_rand))
    rows = (tmp_path / "run" / "offline.jsonl").read_text().splitlines()
    assert len(rows) == 2 + 60 // 20


def test_offline_cli_smoke_and_errors(tmp_path, capsys):
    task = make_task("inverted_pendulum", backend="positional", episode_length=50)
    _random_dataset(tmp_path / "ds.npz", task, 8, 50)
    work = tmp_path / "run"
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "ds.npz"),
               "--workdir", str(work), "--config.trpo.iterations=2", "--config.trpo.chunk=2"])
    assert rc == 0
    assert (work / "summary.json").exists() and (work / "offline.csv").exists()
    before = (work / "offline.jsonl").read_text()
    # A second run in the same work directory is refused and nothing is overwritten.
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "ds.npz"),
               "--workdir", str(work)])
    assert rc == 2 and "already holds a run" in capsys.readouterr().err
    assert (work / "offline.jsonl").read_text() == before
    # Wrong task for the dataset.
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "ds.npz"),
               "--workdir", str(tmp_path / "r2"), "--config.task=hopper"])
    assert rc == 2 and "task" in capsys.readouterr().err
    # Bad override and missing dataset.
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "ds.npz"),
               "--workdir", str(tmp_path / "r3"), "--config.trpo.horizon=5"])
    assert rc == 2 and "unknown config field 'trpo.horizon'" in capsys.readouterr().err
    rc = main(["offline", "--config", "test", "--dataset", str(tmp_path / "nope.npz"),
               "--workdir", str(tmp_path / "r4")])
    assert rc == 2 and "nope.npz" in capsys.readouterr().err
