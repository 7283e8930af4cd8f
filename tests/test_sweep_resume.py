"""Sweeps under faults: checkpoints every k deployments, ``resume`` after an interruption, and the
one-line refusals of a resume that cannot be honest.

The sweep is ``bremen_jax/configs/sweeps/test.py`` (2 points x 2 seeds, 2 deployments of the tiny
``test`` config). A sweep run with ``checkpoint_every=1`` is interrupted right after its first
checkpoint (deployment 1 of 2 done, nothing else written) and resumed in a second call: its
metrics must equal, bit for bit, those of the same sweep run through without interruption (the
same two programs applied to the same states), and both must equal the one-program sweep
(``checkpoint_every=None``) to float rounding: one deployment per call is the same computation as
the scan over both.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re

import jax
import numpy as np
import pytest
from rich.console import Console

from bremen_jax import sweep
from bremen_jax.run.checkpoint import Checkpointer
from bremen_jax.sweep import program
from tests.test_sweep import assert_metrics_close, count_compiles


class Stop(KeyboardInterrupt):
    """What the test raises to interrupt a sweep (like Ctrl-C between two deployments)."""


def _leaves_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def through_and_log(tmp_path_factory):
    """The test sweep, one deployment per call with a checkpoint between them, not interrupted;
    and what it printed."""
    out = io.StringIO()
    result = sweep.run_sweep("test", tmp_path_factory.mktemp("through") / "w", checkpoint_every=1,
                             console=Console(file=out, width=300))
    return result, out.getvalue()


@pytest.fixture(scope="module")
def through(through_and_log):
    return through_and_log[0]


def test_each_deployment_prints_its_return_over_runs(through_and_log):
    """A long sweep is not silent: after each call a line gives the deployment's wall time and
    its return over the runs (the same numbers as runs.csv's return_d<k>)."""
    result, text = through_and_log
    for k in (1, 2):
        line = next(x for x in text.splitlines() if f"deployment {k} of 2 done in" in x)
        got = [float(v) for v in re.findall(r"-?\d+\.\d", line.split("return ")[1])[:2]]
        returns = np.array([r[f"return_d{k}"] for r in result.rows])
        assert len(returns) == 4 and f"over {len(returns)} runs" in line
        np.testing.assert_allclose(got, [returns.mean(), returns.std(ddof=1)], atol=0.051)
        assert line.endswith("checkpoint saved") == (k == 1), line


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """The same sweep stopped right after its first checkpoint; returns its directory and what it
    held at that moment."""
    w = tmp_path_factory.mktemp("interrupted") / "w"
    save = Checkpointer.save

    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise Stop

    with pytest.MonkeyPatch.context() as mp, pytest.raises(Stop):
        mp.setattr(Checkpointer, "save", save_then_stop)
        sweep.run_sweep("test", w, checkpoint_every=1)
    held = sorted(str(p.relative_to(w)) for p in w.rglob("*") if p.is_file())
    with np.load(w / "metrics_outer0.partial.npz") as f:
        partial = {k: f[k] for k in f.files}
    ckpt = Checkpointer(w / program.CHECKPOINTS / "outer0")
    try:
        history = ckpt.read_meta()["extra"]["history"]
    finally:
        ckpt.close()
    return w, held, json.loads((w / "sweep.json").read_text()), partial, history


@pytest.fixture(scope="module")
def resumed(interrupted):
    w = interrupted[0]
    with count_compiles() as compiles:
        result = sweep.run_sweep("test", w, resume=True)
    return result, compiles


def test_interrupted_sweep_keeps_its_checkpoint(interrupted, through):
    """... and the metrics of its deployment done, readable without the checkpoint
    (metrics_outer0.partial.npz: what ``experiments.learning_details`` reads of an unfinished
    sweep), equal to the first deployment of the sweep run through."""
    w, held, meta, partial, _ = interrupted
    assert meta["finished"] is False and meta["timings"] == [] and meta["checkpoint_every"] == 1
    assert [n for n in held if n.startswith("metrics_outer")] == ["metrics_outer0.partial.npz"]
    assert not [n for n in held if n.endswith(".tmp")]
    assert partial["seeds"].shape == (4,)  # the runs of the outer value, as the final file
    full = through.metrics[0]
    for group in ("preamble", "eval"):
        for name, x in full[group].items():
            np.testing.assert_array_equal(partial[f"{group}|{name}"], np.asarray(x)[:, :1],
                                          err_msg=name)
    ckpt = Checkpointer(w / program.CHECKPOINTS / "outer0")
    try:
        assert ckpt.steps() == [1]
        assert ckpt.read_meta()["position"] == {"outer": 0, "deployments": 1}
    finally:
        ckpt.close()


def test_resumed_sweep_equals_the_sweep_run_through(resumed, through):
    result, _ = resumed
    assert len(result.metrics) == len(through.metrics) == 1
    _leaves_equal(result.metrics[0], through.metrics[0])
    assert [r["final_return"] for r in result.rows] == [r["final_return"] for r in through.rows]
    info = result.timings[0]
    assert info["resumed_after_deployment"] == 1 and info["checkpoints_saved"] == 0
    assert through.timings[0]["checkpoints_saved"] == 1  # 2 deployments: one checkpoint between
    meta = json.loads((result.workdir / "sweep.json").read_text())
    assert meta["finished"] is True and meta["resumes"] == 1
    assert not (result.workdir / program.CHECKPOINTS).exists()  # removed once done
    for name in ("runs.csv", "summary.json", "metrics_outer0.npz"):
        assert (result.workdir / name).is_file()
    assert not (result.workdir / "metrics_outer0.partial.npz").exists()  # removed once done


def test_a_resumed_sweep_reports_the_time_of_the_calls_before_it(interrupted, resumed, through):
    """Nothing of the interrupted call is lost, its time included: the checkpoint records its
    compile and its deployment's seconds, and the resumed call reports them (``earlier_s``)
    next to its own, as one history of both calls."""
    before = interrupted[4]
    assert len(before["compile_s"]) == 1 and [d for d, _ in before["chunk_s"]] == [1]
    assert "unrecorded" not in before
    info = resumed[0].timings[0]
    after = info["history"]
    assert after["compile_s"][0] == before["compile_s"][0] and len(after["compile_s"]) == 2
    assert after["chunk_s"][0] == before["chunk_s"][0]
    assert [d for d, _ in after["chunk_s"]] == [1, 2]
    assert after["chunk_s"][1][1] <= info["run_s"] + 1e-3  # rounded to ms
    assert info["earlier_s"] == pytest.approx(before["compile_s"][0] + before["chunk_s"][0][1])
    whole = through.timings[0]
    assert "earlier_s" not in whole and len(whole["history"]["compile_s"]) == 1
    assert [d for d, _ in whole["history"]["chunk_s"]] == [1, 2]
    assert sum(s for _, s in whole["history"]["chunk_s"]) <= whole["run_s"] + 2e-3


def test_checkpointed_sweep_equals_the_one_program_sweep(through, tmp_path_factory):
    whole = sweep.run_sweep("test", tmp_path_factory.mktemp("whole") / "w")
    assert_metrics_close(through.metrics[0], whole.metrics[0])
    np.testing.assert_allclose([r["final_return"] for r in through.rows],
                               [r["final_return"] for r in whole.rows], rtol=1e-5)


def test_resuming_a_finished_sweep_reads_it_back(resumed):
    result = resumed[0]
    before = (result.workdir / "runs.jsonl").read_text()
    with count_compiles() as compiles:
        again = sweep.run_sweep("test", result.workdir, resume=True)
    assert not [n for n in compiles if sweep.PROGRAM_NAME in str(n)]
    _leaves_equal(again.metrics[0], result.metrics[0])
    assert (result.workdir / "runs.jsonl").read_text() == before
    assert json.loads((result.workdir / "sweep.json").read_text())["resumes"] == 2


def test_read_metrics_inverts_write_metrics(resumed, tmp_path):
    result = resumed[0]
    plan = sweep.build_plans(*sweep.load_sweep("test"))[0]
    back = program.report.read_metrics(result.workdir / "metrics_outer0.npz", plan)
    _leaves_equal(back, result.metrics[0])
    other = dataclasses.replace(plan, seeds=plan.seeds + 1)
    with pytest.raises(ValueError, match="holds other runs than outer value 0"):
        program.report.read_metrics(result.workdir / "metrics_outer0.npz", other)
    bad = tmp_path / "metrics_outer0.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read .*remove it"):
        program.report.read_metrics(bad, plan)


def test_bad_resumes_are_refused_in_one_line(resumed, tmp_path):
    w = resumed[0].workdir
    before = {p: p.read_bytes() for p in w.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(sweep.SweepError, match=r"config field trpo.lam: 0.95 -> 0.9"):
        sweep.run_sweep("test", w, resume=True, overrides=["trpo.lam=0.9"])
    with pytest.raises(sweep.SweepError, match="num_deployments .*differs"):
        sweep.run_sweep("test", w, resume=True, num_deployments=1)
    with pytest.raises(sweep.SweepError, match="holds no sweep.json"):
        sweep.run_sweep("test", tmp_path / "nothing", resume=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "sweep.json").write_text("{not json")
    with pytest.raises(sweep.SweepError, match="sweep.json is unreadable"):
        sweep.run_sweep("test", tmp_path / "junk", resume=True)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(sweep.SweepError, match="checkpoint_every must be an int >= 1"):
            sweep.run_sweep("test", tmp_path / "new", checkpoint_every=bad)
    assert {p: p.read_bytes() for p in w.rglob("*")
            if p.is_file() and p.name != ".lock"} == before  # nothing changed


def test_a_damaged_metrics_file_is_named_on_resume(resumed, tmp_path):
    import shutil

    w = tmp_path / "copy"
    shutil.copytree(resumed[0].workdir, w)
    (w / "metrics_outer0.npz").write_bytes(b"damaged")
    with pytest.raises(sweep.SweepError, match="cannot resume .*metrics_outer0.npz"):
        sweep.run_sweep("test", w, resume=True)


def test_resume_on_another_padded_run_count_is_refused(tmp_path, monkeypatch):
    """A checkpoint written with another padded run count (another device count) is refused in
    one line before anything is restored; the checkpoint stays."""
    w = tmp_path / "w"
    save = Checkpointer.save

    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise Stop

    with monkeypatch.context() as mp, pytest.raises(Stop):
        mp.setattr(Checkpointer, "save", save_then_stop)
        sweep.run_sweep("test", w, checkpoint_every=1)
    ckpt = Checkpointer(w / program.CHECKPOINTS / "outer0")
    try:
        extra = ckpt.read_meta()["extra"]
        assert (extra["padded_runs"], extra["devices"]) == (4, 1)  # and the timing history
    finally:
        ckpt.close()
    read = Checkpointer.read_meta

    def eight(self, *args, **kwargs):
        meta = read(self, *args, **kwargs)
        return {**meta, "extra": {"padded_runs": 8, "devices": 8}}

    monkeypatch.setattr(Checkpointer, "read_meta", eight)
    with pytest.raises(sweep.SweepError, match="holds 8 runs with padding, this call 4 on 1 "
                                               "device"):
        sweep.run_sweep("test", w, resume=True)
    assert (w / program.CHECKPOINTS / "outer0" / "1").is_dir()
