"""Learning-curve plots (``bremen plot``, ``bremen_jax.plot``, ``curves.png`` at the end of a run),
TensorBoard per TRPO iteration, and the honest names of ``summary.json``.

Run directories here are written by hand (a few JSONL lines), so every number is known; nothing
compiles.
"""

import json
import pathlib
import struct

import numpy as np
import pytest

import bremen_jax
from bremen_jax import config as config_lib
from bremen_jax.cli import main
from bremen_jax.run import plots
from bremen_jax.run.rows import Book, brief_record, build_summary
from bremen_jax.run.workdir import Run, RunResult


def _write_run(path: pathlib.Path, *, seed=0, kind="train", target_kl=0.1, every=1,
               chunks=(), deps=(), summary=None) -> pathlib.Path:
    """A run directory: config.json, run.json and the two JSONL logs (rows as given)."""
    path.mkdir(parents=True)
    config = {"seed": seed, "task": "toy", "trpo": {"iterations": 4, "chunk": 2,
                                                  "target_kl": target_kl},
              "imagine": {"horizon": 5}, "deploy": {"batch_size": 100},
              "checkpoint": {"every": every}}
    (path / "config.json").write_text(json.dumps(config))
    (path / "run.json").write_text(json.dumps({"kind": kind}))
    for name, rows in (("chunks", chunks), ("deployments", deps)):
        (path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def _chunk(d, c, ret, imagined):
    it = (d - 1) * 4 + c * 2
    row = {"step": it, "deployment": d, "chunk": c, "iteration": it, "eval/return_mean": ret,
           "imagined_return_mean": imagined, "imagined_return": -1.0}
    if d > 1:  # runs from before eval.model_return have no such column: NaN
        row["eval/model_return_mean"] = 3.0 * imagined
        row["eval/prefix_return_mean"] = 2.0 * imagined
    return row


def _dep(d, ret, bc, val, init_val, collect):
    return {"step": d, "deployment": d, "env_steps": 100 * d, "return": ret, "bc_return": bc,
            "dynamics/val_loss": val, "dynamics/init_val_loss": init_val,
            "collect/return_mean": collect}


def _two_deployments(path, seed=0, scale=1.0, **kw):
    """Deployment 1 finished (chunks 1-2), deployment 2 finished, deployment 3 half-way."""
    s = scale
    chunks = [_chunk(1, 1, 10 * s, 20 * s), _chunk(1, 2, 12 * s, 24 * s),
              _chunk(2, 1, "nan", 30 * s), _chunk(2, 2, 16 * s, 34 * s),
              _chunk(3, 1, 18 * s, 40 * s)]
    deps = [_dep(1, 12 * s, 5 * s, 0.5 * s, 2.0 * s, 3.0), _dep(2, 16 * s, 9 * s, 0.25 * s,
                                                                  0.5 * s, 11.0)]
    return _write_run(path, seed=seed, chunks=chunks, deps=deps, **kw)


def test_load_run_reads_the_logs_exactly(tmp_path):
    r = plots.load_run(_two_deployments(tmp_path / "a"))
    assert r.kind == "train" and r.task == "toy" and r.config["trpo.iterations"] == 4
    np.testing.assert_array_equal(r.iteration, [2, 4, 6, 8, 10])
    np.testing.assert_array_equal(r.chunk_deployment, [1, 1, 2, 2, 3])
    np.testing.assert_array_equal(r.eval_return, [10, 12, np.nan, 16, 18])  # "nan" read back
    np.testing.assert_array_equal(r.imagined_return, [20, 24, 30, 34, 40])  # the chunk's mean
    np.testing.assert_array_equal(r.model_return, [np.nan, np.nan, 90, 102, 120])
    np.testing.assert_array_equal(r.prefix_return, [np.nan, np.nan, 60, 68, 80])
    np.testing.assert_array_equal(r.deployment, [1, 2])
    np.testing.assert_array_equal(r.env_steps, [100, 200])
    np.testing.assert_array_equal(r.returns, [12, 16])
    np.testing.assert_array_equal(r.bc_return, [5, 9])
    np.testing.assert_array_equal(r.val_loss, [0.5, 0.25])
    np.testing.assert_array_equal(r.init_val_loss, [2.0, 0.5])
    np.testing.assert_array_equal(r.collect_return, [3.0, 11.0])
    assert np.isnan(r.behavior_return)
    # Deployment 3 has not finished: its chunk sits at 3 * deploy.batch_size real samples.
    np.testing.assert_array_equal(plots.chunk_env_steps(r), [100, 100, 200, 200, 300])


def test_load_run_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run .*no config.json"):
        plots.load_run(tmp_path)
    bad = _two_deployments(tmp_path / "bad")
    (bad / "chunks.jsonl").write_text('{"step": 2\n')
    with pytest.raises(ValueError, match="chunks.jsonl holds a line that is not JSON"):
        plots.load_run(bad)


def test_mean_std_over_runs_on_the_union_of_x():
    x, m, s, n = plots.mean_std([np.array([2, 4]), np.array([2, 4, 6])],
                                [np.array([1.0, 3.0]), np.array([3.0, 7.0, 10.0])])
    np.testing.assert_array_equal(x, [2, 4, 6])
    np.testing.assert_allclose(m, [2.0, 5.0, 10.0])   # (1+3)/2, (3+7)/2, 10
    np.testing.assert_allclose(s, [1.0, 2.0, 0.0])    # population std over the runs there
    np.testing.assert_array_equal(n, [2, 2, 1])
    x, m, s, n = plots.mean_std([np.array([1, 2])], [np.array([np.nan, 4.0])])
    np.testing.assert_array_equal(x, [2])  # a NaN is no value
    np.testing.assert_array_equal(m, [4.0])


def test_runs_group_by_config_up_to_the_seed_and_host_fields(tmp_path):
    a = plots.load_run(_two_deployments(tmp_path / "a", seed=0))
    b = plots.load_run(_two_deployments(tmp_path / "b", seed=1, every=3))  # host field only
    c = plots.load_run(_two_deployments(tmp_path / "c", seed=0, target_kl=0.05))
    groups = plots.group_runs([a, b, c])
    assert [[r.path for r in g] for g in groups] == [[a.path, b.path], [c.path]]
    assert plots.group_labels(groups) == ["trpo.target_kl=0.1 (2 runs)", "trpo.target_kl=0.05"]
    assert plots.group_labels([[a]]) == ["toy"]


def _line(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return line


def test_plot_overlays_two_seeds_as_mean_and_std(tmp_path):
    a = _two_deployments(tmp_path / "a", seed=0, scale=1.0)
    b = _two_deployments(tmp_path / "b", seed=1, scale=3.0)
    out = tmp_path / "fig" / "curves.png"
    fig = bremen_jax.plot([a, b], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not out.with_name("curves.png.tmp").exists()
    ax_a, ax_b, ax_c = fig.axes
    assert ax_a.get_xlabel() == "real environment steps (transitions collected)"
    assert ax_a.get_ylabel() == "return (deterministic policy, real episodes)"
    assert ax_b.get_xlabel() == "TRPO iterations (whole run)"
    assert ax_c.get_xlabel() == "deployment" and ax_c.get_yscale() == "log"
    assert [ax.get_title()[:3] for ax in fig.axes] == ["(a)", "(b)", "(c)"]
    assert "2 runs in 1 config(s)" in fig._suptitle.get_text()
    assert not fig.legends  # one config: no legend of configs
    # Returns after deployments 1, 2: seeds give 12/36 and 16/48 -> mean 24, 32; std 12, 16.
    line = _line(ax_a, "after the deployment")
    np.testing.assert_allclose(line.get_xdata(), [100, 200])
    np.testing.assert_allclose(line.get_ydata(), [24.0, 32.0])
    band = ax_a.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(24.0 - 12.0) and band.max() == pytest.approx(32.0 + 16.0)
    # (b): real return per chunk (chunk 3's NaN left out) and the imagined return, means.
    real = _line(ax_b, "real (evaluation episodes)")
    np.testing.assert_allclose(real.get_xdata(), [2, 4, 8, 10])
    np.testing.assert_allclose(real.get_ydata(), [20, 24, 32, 36])
    imagined = _line(ax_b, "imagined (5-step model rollouts)")
    np.testing.assert_allclose(imagined.get_ydata(), [40, 48, 60, 68, 80])
    # (c): validation error after the fit: (0.5 + 1.5) / 2, (0.25 + 0.75) / 2.
    np.testing.assert_allclose(_line(ax_c, "after the fit").get_ydata(), [1.0, 0.5])
    for suffix in ("svg", "pdf"):
        bremen_jax.plot(a, tmp_path / f"c.{suffix}")
        assert (tmp_path / f"c.{suffix}").stat().st_size > 0
    with pytest.raises(ValueError, match=r"expected a file name ending in .png, .svg or .pdf"):
        bremen_jax.plot(a, tmp_path / "c.jpg")


def test_plot_draws_different_configs_as_separate_labelled_lines(tmp_path):
    a = _two_deployments(tmp_path / "a")
    c = _two_deployments(tmp_path / "c", target_kl=0.05, scale=2.0)
    fig = plots.plot([a, c], tmp_path / "x.png")
    ax_a = fig.axes[0]
    np.testing.assert_allclose(_line(ax_a, "trpo.target_kl=0.1: after the deployment")
                               .get_ydata(), [12, 16])
    np.testing.assert_allclose(_line(ax_a, "trpo.target_kl=0.05: after the deployment")
                               .get_ydata(), [24, 32])
    from matplotlib.collections import PolyCollection
    assert not [p for p in ax_a.collections if isinstance(p, PolyCollection)]  # 1 run: no band
    # Colours name the configs (figure legend); each panel's legend names the styles.
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["trpo.target_kl=0.1",
                                                                  "trpo.target_kl=0.05"]
    assert [t.get_text() for t in ax_a.get_legend().get_texts()] == [
        "after the deployment", "BC-init (start of its TRPO)", "each TRPO chunk"]


def test_offline_run_is_drawn_against_trpo_iterations(tmp_path):
    chunks = [{"step": i, "deployment": 1, "chunk": i // 2, "iteration": i,
               "eval/return_mean": float(i), "imagined_return_mean": 2.0 * i}
              for i in range(2, 21, 2)]
    deps = [_dep(1, 20.0, 1.0, 0.1, 0.4, None) | {"env_steps": 2000}]
    d = _write_run(tmp_path / "o", kind="offline", chunks=chunks, deps=deps,
                   summary={"behavior_return": 7.5})
    fig = plots.plot(d, tmp_path / "o.png")
    ax_a = fig.axes[0]
    assert ax_a.get_xlabel() == "TRPO iterations (on a dataset of 2000 transitions)"
    line = _line(ax_a, "evaluation")  # BC-init at iteration 0, then every chunk
    np.testing.assert_allclose(line.get_xdata(), [0] + list(range(2, 21, 2)))
    np.testing.assert_allclose(line.get_ydata(), [1.0] + [float(i) for i in range(2, 21, 2)])
    assert _line(ax_a, "dataset's behaviour policy").get_ydata()[0] == 7.5
    assert "(offline)" in fig._suptitle.get_text()


def test_a_run_without_chunks_yet_still_draws(tmp_path):
    fig = plots.plot(_write_run(tmp_path / "e"), tmp_path / "e.png")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no TRPO chunks yet" in texts and "no finished deployments yet" in texts


def test_cli_plot(tmp_path, capsys):
    a, b = _two_deployments(tmp_path / "a"), _two_deployments(tmp_path / "b", seed=1)
    assert main(["plot", str(a)]) == 0
    assert (a / "curves.png").is_file() and f"wrote {a / 'curves.png'}" in capsys.readouterr().out
    assert main(["plot", str(a), str(b), "--out", str(tmp_path / "ab.svg")]) == 0
    assert (tmp_path / "ab.svg").is_file()
    capsys.readouterr()
    assert main(["plot", str(a), str(b)]) == 2
    assert "--out FILE is required with several run directories" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "none"), "--out", str(tmp_path / "n.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bremen plot: error:") and "holds no run" in err and "\n" not in err


def test_train_draws_curves_at_the_end_and_a_plot_failure_loses_nothing(tmp_path, monkeypatch,
                                                                        capsys):
    workdir = tmp_path / "run"

    def fake_run_host(cfg, wd, **kw):  # the run's files, as a finished run leaves them
        _two_deployments(pathlib.Path(wd))
        return RunResult(state=object(), metrics=[], summary=_summary())

    import bremen_jax.run as run_pkg
    monkeypatch.setattr(run_pkg, "run_host", fake_run_host)
    monkeypatch.setattr("bremen_jax.run.display.print_summary", lambda s, c: None)
    assert main(["train", "--config", "test", "--workdir", str(workdir), "--no-progress"]) == 0
    assert (workdir / "curves.png").is_file()
    flat = "".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert f"learningcurves:{workdir / 'curves.png'}" in flat

    def broken(*a, **k):
        raise RuntimeError("no\nfonts")

    monkeypatch.setattr(plots, "plot", broken)
    other = tmp_path / "run2"
    assert main(["train", "--config", "test", "--workdir", str(other), "--no-progress"]) == 0
    flat = "".join(capsys.readouterr().out.split())
    assert f"warning:couldnotdraw{other / 'curves.png'}:RuntimeError:nofonts" in flat
    assert (other / "chunks.jsonl").is_file() and not (other / "curves.png").exists()


def _summary():
    static, _ = config_lib.split(config_lib.load_config("test"))
    book = Book(records=[brief_record({"deployment": 1, "env_steps": 400, "bc_return": 5.0,
                                       "return": 9.0, "collect/return_mean": 2.0}, [7.0, 9.0]),
                         brief_record({"deployment": 2, "env_steps": 800, "bc_return": 8.0,
                                       "return": 12.0, "collect/return_mean": 6.5}, [10., 12.])])
    return build_summary(static, book, (2, 2), 2, 2, "host", 400)


def test_summary_names_the_collecting_policy_s_return_honestly():
    s = _summary()
    assert [r["collect_return"] for r in s["per_deployment"]] == [2.0, 6.5]
    assert all("random_return" not in r for r in s["per_deployment"])
    assert s["random_policy_return"] == 2.0  # deployment 1's uniform-random collection only
    # A book from a checkpoint written with the old name reads the same.
    static, _ = config_lib.split(config_lib.load_config("test"))
    old = Book(records=[{"deployment": 1, "env_steps": 400, "bc_return": 5.0, "return": 9.0,
                         "random_return": 2.0, "chunk_returns": [7.0, 9.0]}])
    s = build_summary(static, old, (1, 2), 2, 2, "host", 400)
    assert s["random_policy_return"] == 2.0 and s["per_deployment"][0]["collect_return"] == 2.0


# ------------------------------------------------------------------------------ TensorBoard
def _events(tb_dir: pathlib.Path) -> dict[str, dict[int, float]]:
    """Every scalar of the event files in ``tb_dir``: ``{tag: {step: value}}`` (TFRecord
    framing: length u64, its crc u32, the Event proto, its crc u32)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for f in sorted(tb_dir.glob("events.out.tfevents.*")):
        data, i = f.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


def test_tensorboard_gets_every_trpo_iteration_and_no_counters(tmp_path):
    cfg = config_lib.load_config("test")  # K = 2 deployments of C = 2 chunks of 2 iterations
    run = Run(cfg, tmp_path / "tb", resume=False, K=2, C=2, samples_per_deployment=400,
              info={"kind": "train"})
    run.open(None)
    book = Book()
    kl = {}
    try:
        for d in (1, 2):
            run.end_preamble(d, {"collect/return_mean": 1.0 * d, "bc_eval/return_mean": 3.0},
                             book)
            for c in (1, 2):
                it = (d - 1) * 4 + c * 2
                kl[it - 1], kl[it] = it / 100 - 0.005, it / 100
                improve = {"trpo/kl_after": np.array([kl[it - 1], kl[it]], np.float32),
                           "imagined_return": np.array([it, it + 0.5], np.float32),
                           "nonfinite/trpo_steps": np.array([0, 0], np.int32)}
                run.end_chunk(d, c, improve, {"eval/return_mean": 10.0 * it}, book)
    finally:
        run.close()
    ev = _events(tmp_path / "tb" / "tb")
    assert ev["improve/trpo/kl_after"] == pytest.approx(kl)         # every iteration, 1..8
    assert sorted(ev["improve/imagined_return"]) == list(range(1, 9))
    assert ev["chunks/eval/return_mean"] == pytest.approx({2: 20, 4: 40, 6: 60, 8: 80})
    assert ev["chunks/imagined_return_mean"] == pytest.approx({2: 2.25, 4: 4.25, 6: 6.25,
                                                               8: 8.25})
    assert ev["deployments/return"] == pytest.approx({1: 40.0, 2: 80.0})
    counters = {"deployment", "chunk", "iteration", "step"}
    assert not [t for t in ev if t.split("/", 1)[1] in counters]
    assert "chunks/trpo/kl_after" not in ev  # the chunk's last value: in improve/ already
    # The CSV/JSONL keep their content (a row per chunk, the counters in it).
    rows = [json.loads(line) for line in (tmp_path / "tb" / "chunks.jsonl").open()]
    assert [(r["deployment"], r["chunk"], r["iteration"]) for r in rows] == [
        (1, 1, 2), (1, 2, 4), (2, 1, 6), (2, 2, 8)]
    assert rows[-1]["trpo/kl_after"] == pytest.approx(0.08)


def test_plotting_does_not_import_jax():
    """`bremen plot` reads logs and draws: JAX and Brax (seconds to import) stay out."""
    import subprocess
    import sys

    code = ("import sys, bremen_jax.run.plots, bremen_jax.cli.plots; "
            "print(sorted(m for m in ('jax', 'brax', 'flax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.strip() == "[]"
