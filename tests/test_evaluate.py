"""``bremen evaluate`` / ``bremen_jax.evaluate``: the JSON's content, reproducibility, the run's own
logged evaluations reproduced from its checkpoints, ``--deployment`` and one-line errors.

One ``bremen train --config test`` run for the module (one evaluation episode per chunk, every
checkpoint kept, so that the keys of its logged evaluations can be recomputed).
"""

import contextlib
import json
import shutil

import jax
import numpy as np
import pytest

import bremen_jax
from bremen_jax import cli
from bremen_jax.datasets.scores import reference_returns
from bremen_jax.run.checkpoint import Checkpointer
from bremen_jax.run.evaluate import evaluate_restored, restore_run
from bremen_jax.run.logs import read_jsonl

K, C = 2, 2  # the test config: 2 deployments of trpo.iterations / trpo.chunk = 2 chunks


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--config", "test", "--workdir", str(workdir), "--no-progress",
                     "--config.eval.num_episodes=1", "--config.checkpoint.max_to_keep=10"]) == 0
    return workdir


def _split(key):
    """What one phase does to the run's key: ``(next run key, the phase's key)``."""
    keys = jax.random.split(key, 2)
    return keys[0], keys[1]


def _with_others(key):
    """``[3]`` keys: ``key`` first (every episode depends on its own key only)."""
    return jax.numpy.concatenate([key[None], jax.random.split(jax.random.key(9), 2)])


def _restore_step(run, step):
    """The whole run state of checkpoint ``step`` (any position)."""
    with Checkpointer(run.workdir / "checkpoints") as ck:
        return ck.restore(run.state, step)[0]


def test_json_schema_scores_and_reproducible(run_dir, capsys):
    out = run_dir / "again.json"
    assert cli.main(["evaluate", str(run_dir), "--episodes", "3", "--seed", "5"]) == 0
    printed = capsys.readouterr().out
    assert "target" in printed and "bc" in printed and "evaluation.json" in printed
    assert cli.main(["evaluate", str(run_dir), "--episodes", "3", "--seed", "5",
                     "--out", str(out)]) == 0
    first = json.loads((run_dir / "evaluation.json").read_text())
    assert json.loads(out.read_text()) == first  # deterministic: the same numbers twice
    assert first["checkpoint"] == {"step": K * (C + 1) + C, "deployment": K, "chunk": C}
    assert (first["kind"], first["task"], first["backend"], first["episode_length"]) == (
        "train", "inverted_pendulum", "positional", 50)
    assert (first["mode"], first["episodes"], first["seed"]) == ("deterministic", 3, 5)
    assert first["skipped_checkpoints"] == []
    r_random, r_expert = reference_returns("inverted_pendulum")
    for name in ("target", "bc"):
        p = first["policies"][name]
        assert len(p["returns"]) == len(p["lengths"]) == 3
        assert p["return_mean"] == pytest.approx(np.mean(p["returns"]), rel=1e-6)
        assert p["return_std"] == pytest.approx(np.std(p["returns"]), rel=1e-6, abs=1e-6)
        assert p["length_mean"] == pytest.approx(np.mean(p["lengths"]))
        assert all(1 <= n <= 50 for n in p["lengths"])
        # inverted_pendulum: +1 per step alive, so an episode's return is its length
        assert p["returns"] == [float(n) for n in p["lengths"]]
        assert p["normalized_score"] == pytest.approx(
            100 * (p["return_mean"] - r_random) / (r_expert - r_random))


def test_python_api_and_other_seed(run_dir):
    a = bremen_jax.evaluate(run_dir, episodes=3, seed=5)
    b = bremen_jax.evaluate(run_dir, episodes=3, seed=6)
    assert a["policies"] == json.loads((run_dir / "evaluation.json").read_text())["policies"]
    # other reset states: the (imperfect) behaviour clone's episodes change
    assert a["policies"]["bc"]["returns"] != b["policies"]["bc"]["returns"]


def test_reproduces_the_runs_logged_evaluations(run_dir):
    """With the run's own key and episode count, the same numbers as its logs: the BC-init
    evaluation of deployment 2 (behaviour clone) and the last chunk's (target policy)."""
    last = restore_run(run_dir)
    assert last.position == (K, C)
    deps = read_jsonl(run_dir / "deployments.jsonl")
    chunks = read_jsonl(run_dir / "chunks.jsonl")
    # Deployment 2's preamble: collect, fit_dynamics, fit_bc, evaluate, each splitting the key
    # of the state at the end of deployment 1.
    key = _restore_step(last, 1 * (C + 1) + C).key
    for _ in range(3):
        key, _ = _split(key)
    key, bc_key = _split(key)
    assert np.array_equal(jax.random.key_data(key),  # the key derivation is the run's
                          jax.random.key_data(_restore_step(last, K * (C + 1)).key))
    # Three episodes (the other tests' program, compiled once); the first has the run's key.
    bc = evaluate_restored(last, keys=_with_others(bc_key), policies=("bc",))["bc"]
    assert bc["returns"][0] == pytest.approx(deps[-1]["bc_eval/return_mean"], rel=1e-6)
    # The last chunk: improve, then evaluate, from the state after chunk C - 1.
    key, _ = _split(_restore_step(last, K * (C + 1) + C - 1).key)
    key, eval_key = _split(key)
    assert np.array_equal(jax.random.key_data(key), jax.random.key_data(last.state.key))
    target = evaluate_restored(last, keys=_with_others(eval_key), policies=("target",))["target"]
    assert target["returns"][0] == pytest.approx(chunks[-1]["eval/return_mean"], rel=1e-6)
    assert target["lengths"][0] == pytest.approx(chunks[-1]["eval/length_mean"], rel=1e-6)


def test_deployment_choice_and_errors(run_dir, tmp_path, capsys):
    first = bremen_jax.evaluate(run_dir, episodes=3, deployment=1)
    assert first["checkpoint"] == {"step": 1 * (C + 1) + C, "deployment": 1, "chunk": C}
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "checkpoints" / str(1 * (C + 1) + C))
    assert cli.main(["evaluate", str(copy), "--deployment", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no checkpoint of the end of deployment 1" in err
    assert "available deployments: 2" in err and "max_to_keep=10" in err
    for step in range(K * (C + 1) + C):
        shutil.rmtree(copy / "checkpoints" / str(step), ignore_errors=True)
    assert cli.main(["evaluate", str(copy), "--deployment", "1"]) == 2
    assert "only the latest checkpoint is kept" in capsys.readouterr().err
    assert cli.main(["evaluate", str(run_dir), "--deployment", "3"]) == 2
    assert "deployment must be an int in 1..2" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "{tmp}/nothing"], "is not a bremen run directory (no config.json)"),
    (["evaluate", "{run}", "--out", "{tmp}/x.txt"], "must end in .json"),
    (["evaluate", "{run}", "--out", "{tmp}/missing/x.json"], "which does not exist"),
    (["evaluate", "{run}", "--episodes", "0"], "expected a positive integer"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in argv]
    with pytest.raises(SystemExit) if "--episodes" in argv else contextlib.nullcontext():
        assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]



def test_stochastic_samples_actions(run_dir):
    det = bremen_jax.evaluate(run_dir, episodes=3, seed=5)
    sto = bremen_jax.evaluate(run_dir, episodes=3, seed=5, stochastic=True)
    assert (det["mode"], sto["mode"]) == ("deterministic", "stochastic")
    again = bremen_jax.evaluate(run_dir, episodes=3, seed=5, stochastic=True)
    assert again["policies"] == sto["policies"]  # the action noise comes from the seed
    # same reset states, other actions: the clone's returns change
    assert sto["policies"]["bc"]["returns"] != det["policies"]["bc"]["returns"]
