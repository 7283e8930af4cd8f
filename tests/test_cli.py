"""The ``bremen`` subcommands added for datasets, sweeps and benchmarks: they reach the library
and turn bad input into one-line errors (exit 2) without touching existing files."""

from __future__ import annotations

import numpy as np
import pytest

from bremen_jax import cli
from bremen_jax.data.dataset import load_dataset

TASK = "inverted_pendulum"


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in ("train", "offline", "collect", "import-dataset", "export-dataset", "sweep",
                 "bench", "tasks", "dataset-info"):
        assert name in out


def test_collect_export_import_round_trip(tmp_path, capsys):
    data = tmp_path / "expert.npz"
    rc = cli.main(["collect", "--task", TASK, "--policy", "expert", "--noise", "eps1",
                   "--size", "60", "--out", str(data), "--num-envs", "2",
                   "--episode-length", "25", "--seed", "3"])
    assert rc == 0
    assert "60 transitions of inverted_pendulum, policy expert, noise eps1" in \
        capsys.readouterr().out
    tr, meta = load_dataset(data)
    assert tr.obs.shape == (60, 4) and meta["noise"] == "eps1" and meta["seed"] == 3

    h5 = tmp_path / "expert.hdf5"
    assert cli.main(["export-dataset", str(data), "--out", str(h5)]) == 0
    back = tmp_path / "back.npz"
    assert cli.main(["import-dataset", str(h5), "--out", str(back), "--task", TASK]) == 0
    tr2, _ = load_dataset(back)
    for name in ("obs", "action", "reward", "next_obs", "done", "truncation"):
        np.testing.assert_array_equal(np.asarray(getattr(tr2, name)),
                                      np.asarray(getattr(tr, name)), err_msg=name)
    # exporting again onto the same path is refused and the file is kept
    before = h5.read_bytes()
    assert cli.main(["export-dataset", str(data), "--out", str(h5)]) == 2
    assert "already exists; refusing to overwrite it" in capsys.readouterr().err
    assert h5.read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["collect", "--task", "nope", "--policy", "expert", "--size", "5"],
     "--task must be one of"),
    (["collect", "--task", TASK, "--policy", "expert", "--size", "0"], "--size must be an int"),
    (["collect", "--task", TASK, "--policy", "expert", "--size", "5", "--noise", "eps7"],
     "--noise must be one of"),
    (["import-dataset", "/no/such/file.hdf5", "--task", TASK], "/no/such/file.hdf5"),
    (["sweep", "--config", "no_such_sweep"], "sweep file 'no_such_sweep' not found"),
    (["sweep", "--config", "test", "--config.trpo.target_kl=0.2"], "trpo.target_kl"),
    (["sweep", "--config", "test", "--num-devices", "0"], "--num-devices must be in 1.."),
    (["sweep", "--config", "test", "--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["sweep", "--config", "test", "--resume"], "holds no sweep.json"),
])
def test_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    extra = ["--workdir", str(out)] if argv[0] == "sweep" else ["--out", str(out)]
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "/x", "--stochastik"], "bremen evaluate: error: unrecognized arguments: "
                                         "--stochastik; did you mean '--stochastic'?"),
    (["trian"], "invalid choice: 'trian' (choose from 'train', "),
    (["trian"], "; did you mean 'train'? (`bremen --help` lists the arguments)"),
    (["--bogus"], "bremen: error: unrecognized arguments: --bogus"),
    (["render", "/x", "--out", "a.gif", "--policy", "targt"], "did you mean 'target'?"),
    (["plot"], "bremen plot: error: the following arguments are required: RUN_DIR"),
    (["tasks", "--x"], "bremen tasks: error: unrecognized arguments: --x (`bremen tasks --help`"),
    (["train", "--seeds", "3"], "unrecognized argument '--seeds' (did you mean '--seed'?); "
                                "config fields are overridden as --config.FIELD=VALUE"),
])
def test_usage_errors_are_one_line_with_a_hint(capsys, argv, message):
    """argparse's own errors (unknown flags, a mistyped command or choice, missing arguments)
    are one line naming the closest valid one, not the usage block; never help with exit 0."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
    assert message in captured.err, captured.err


def test_sweep_refuses_a_non_empty_workdir(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert cli.main(["sweep", "--config", "test", "--workdir", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_interrupted_sweep_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from bremen_jax import sweep

    def stop(*args, **kwargs):
        assert kwargs["checkpoint_every"] == 2 and kwargs["resume"] is False
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", stop)
    w = str(tmp_path / "w")
    assert cli.main(["sweep", "--config", "test", "--workdir", w, "--checkpoint-every", "2"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (f"continue with 'bremen sweep --config test --workdir {w} "
                                      f"--checkpoint-every 2 --resume'") in err, err


def test_bench_passes_its_flags_to_the_runner(capsys):
    assert cli.main(["bench", "--phases", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
