"""A quiet, consistent command line: third-party start-up noise only with ``--verbose``, instant
``bremen bench --help``, help texts with defaults, the task and outputs checked before anything
is printed, loaded or compiled, ``bremen tasks``' columns, the sweep's two throughputs."""

from __future__ import annotations

import importlib.util
import io
import os
import pathlib
import subprocess
import sys
import warnings

import pytest

from bremen_jax import cli
from bremen_jax.cli.common import HelpFormatter
from bremen_jax.cli.quiet import BRAX_NOTICE, quiet_third_party
from bremen_jax.envs.spec import UnstablePhysicsWarning

TASKS_COLUMNS = ["task", "obs", "act", "backend", "episode", "R_random", "R_expert", "unstable"]


def _bremen(args, cwd):
    env = {**os.environ, "PYTHONWARNINGS": ""}
    return subprocess.run([sys.executable, "-m", "bremen_jax.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tasks_runs(tmp_path_factory):
    """``bremen tasks`` and ``bremen tasks --verbose`` (each builds every task: Brax + MuJoCo)."""
    quiet_dir, verbose_dir = (tmp_path_factory.mktemp(n) for n in ("quiet", "verbose"))
    return (_bremen(["tasks"], quiet_dir), quiet_dir,
            _bremen(["--verbose", "tasks"], verbose_dir), verbose_dir)


def test_third_party_noise_only_with_verbose(tasks_runs):
    quiet, quiet_dir, verbose, verbose_dir = tasks_runs
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert quiet.stderr == ""
    assert not (quiet_dir / "MUJOCO_LOG.TXT").exists()
    # the same table on stdout either way: --verbose sends warp's prints to stderr
    assert quiet.stdout == verbose.stdout and quiet.stdout.startswith("task ")
    assert "Brax System, piplines and environments are not actively" in verbose.stderr
    assert "compiler attribute 'settotalmass' is deprecated" in verbose.stderr
    if importlib.util.find_spec("warp") is None:
        assert "Failed to import warp: No module named 'warp'" in verbose.stderr


def test_tasks_lists_sizes_backend_episode_and_references(tasks_runs):
    from bremen_jax.datasets.scores import reference_returns

    lines = tasks_runs[0].stdout.splitlines()
    assert lines[0].split()[:8] == TASKS_COLUMNS
    rows = {line.split()[0]: line.split() for line in lines[1:7]}
    r_random, r_expert = reference_returns("halfcheetah")
    assert rows["halfcheetah"] == ["halfcheetah", "17", "6", "generalized", "1000",
                                   f"{r_random:.1f}", f"{r_expert:.1f}", "-"]
    assert rows["inverted_pendulum"][:5] == ["inverted_pendulum", "4", "1", "positional", "1000"]
    assert rows["ant"][1:4] == ["27", "8", "mjx"] and rows["ant"][-1] == "generalized"


def test_quiet_silences_only_the_named_notices(capfd):
    import mujoco

    before = mujoco.get_mju_user_warning()
    with pytest.warns(UnstablePhysicsWarning) as record:   # our own warnings still show
        with quiet_third_party():
            warnings.warn("Brax System, piplines and environments are not actively being "
                          "maintained. Please see MJX", UserWarning)
            warnings.warn("an unstable pair", UnstablePhysicsWarning)
            warnings.warn("some other notice", UserWarning)
            mujoco.MjModel.from_xml_string(
                '<mujoco><compiler settotalmass="1"/><worldbody><body><joint type="free"/>'
                '<geom size=".1"/></body></worldbody></mujoco>')
    assert [str(w.message) for w in record] == ["an unstable pair", "some other notice"]
    assert "settotalmass" not in capfd.readouterr().err
    assert mujoco.get_mju_user_warning() is before   # handler and filters are undone
    assert BRAX_NOTICE.startswith("Brax System")


def test_quiet_drops_orbaxs_slow_save_advisory_only(caplog):
    """orbax's "Waiting for previous save ..." (absl logger, printed under load in front of a
    disk-full error that must be the only line) is dropped; other absl records pass, and the
    filter is gone after the block."""
    import logging

    absl = logging.getLogger("absl")
    wait = ("Waiting for previous save to complete took %f seconds. If this number is high, "
            "consider checkpointing less frequently.")
    with caplog.at_level(logging.WARNING, logger="absl"):
        with quiet_third_party():
            absl.warning(wait, 1.353803)
            absl.warning("something else from orbax")
        with quiet_third_party(verbose=True):
            absl.warning(wait, 2.0)
        absl.warning(wait, 3.0)
    assert [r.getMessage()[:41] for r in caplog.records] == [
        "something else from orbax", "Waiting for previous save to complete too",
        "Waiting for previous save to complete too"]  # verbose, and after the block


def test_bench_help_imports_no_jax():
    code = ("import sys\nfrom bremen_jax.cli import main\ntry:\n    main(['bench', '--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in ('jax', 'brax', 'mujoco') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.splitlines()[-1] == "[]"
    assert "--config.FIELD=VALUE" in out and "--out DIR|FILE.json" in out


def _subparsers():
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.choices and a.dest == "command"]
    return sub.choices


def test_every_option_has_help_with_its_default_and_no_issue_numbers():
    import re

    for name, p in _subparsers().items():
        text = p.format_help()
        assert not re.search(r"issue \d", text), name
        assert "--verbose" in text and "--debug" in text, name
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"bremen {name} {action.option_strings[0]} has no help"
            if action.default not in (None, False, [], "==SUPPRESS=="):
                helped = HelpFormatter("x")._get_help_string(action)
                assert "default" in helped, f"bremen {name} {action.option_strings[0]}"


def test_collect_help_default_num_envs_is_the_librarys():
    from bremen_jax.datasets.mixtures import DEFAULT_NUM_ENVS

    assert f"(default: {DEFAULT_NUM_ENVS})" in " ".join(
        _subparsers()["collect"].format_help().split())


TASK_ERROR = ("unknown task 'halfchetah'; valid tasks: ant, cheetah_run, halfcheetah, hopper, "
              "inverted_pendulum, walker2d (a task registered by a config file needs that file: "
              "--config FILE, also with --resume); did you mean 'halfcheetah'?")


@pytest.mark.parametrize("command", ["train", "offline", "bench"])
def test_unknown_task_before_anything_prints(tmp_path, capsys, command):
    argv = {"train": ["--workdir", str(tmp_path / "w")],
            "offline": ["--workdir", str(tmp_path / "w"), "--dataset", str(tmp_path / "d.npz")],
            "bench": ["--suite", "tiny", "--out", str(tmp_path / "w")]}[command]
    assert cli.main([command, "--config", "test", "--config.task=halfchetah", *argv]) == 2
    out, err = capsys.readouterr()
    expected = TASK_ERROR if command != "bench" else TASK_ERROR.replace(
        " (a task registered by a config file needs that file: --config FILE, also with "
        "--resume)", "")
    assert out == "" and err == f"bremen {command}: error: {expected}\n"
    assert list(tmp_path.iterdir()) == []


def test_unknown_config_field_did_you_mean(tmp_path, capsys):
    assert cli.main(["train", "--config", "test", "--config.trpo.gama=0.9",
                     "--workdir", str(tmp_path / "w")]) == 2
    assert capsys.readouterr() == ("", "bremen train: error: unknown config field 'trpo.gama'; "
                                       "did you mean 'trpo.gamma'?\n")


def test_seed_flag_sets_the_config_seed(tmp_path):
    from bremen_jax.cli import runs

    args, overrides = cli.build_parser().parse_known_args(
        ["train", "--config", "test", "--seed", "7", "--workdir", str(tmp_path / "w")])
    cfg, _ = runs._config(args, overrides, "train")
    assert cfg.seed == 7


@pytest.mark.parametrize("command,expected", [("train", "quick_tuned"), ("offline", "quick")])
def test_default_config_per_command(tmp_path, command, expected):
    """Without --config, train runs quick_tuned and offline quick (work directory named so)."""
    from bremen_jax import config as config_lib
    from bremen_jax.cli import runs

    argv = [command, "--workdir", str(tmp_path / "w")]
    args, overrides = cli.build_parser().parse_known_args(argv)
    cfg, _ = runs._config(args, overrides, command)
    assert args.config == expected
    assert cfg.to_dict() == config_lib.load_config(expected).to_dict()
    args, _ = cli.build_parser().parse_known_args([command])
    runs._config(args, [], command)
    assert pathlib.Path(args.workdir).name.startswith(f"{command}-{expected}-")


def test_offline_missing_dataset_before_the_banner(tmp_path, capsys):
    assert cli.main(["offline", "--config", "test", "--workdir", str(tmp_path / "w"),
                     "--dataset", str(tmp_path / "none.npz")]) == 2
    assert capsys.readouterr() == ("", f"bremen offline: error: {tmp_path / 'none.npz'}: no such "
                                       f"dataset file\n")


@pytest.mark.parametrize("command", ["export-dataset", "import-dataset"])
def test_existing_output_refused_before_the_input_is_read(tmp_path, capsys, command):
    out = tmp_path / "exists.h5"
    out.write_bytes(b"keep")
    extra = ["--task", "hopper"] if command == "import-dataset" else []
    assert cli.main([command, str(tmp_path / "missing-input"), "--out", str(out), *extra]) == 2
    tail = " (pass --overwrite to replace it)" if command == "export-dataset" else ""
    assert capsys.readouterr().err == (f"bremen {command}: error: --out {out} already exists; "
                                       f"refusing to overwrite it{tail}\n")
    assert out.read_bytes() == b"keep"


def test_import_dataset_checks_the_task_before_the_input(tmp_path, capsys):
    assert cli.main(["import-dataset", str(tmp_path / "missing"), "--out",
                     str(tmp_path / "o.npz"), "--task", "nope"]) == 2
    assert capsys.readouterr().err.startswith("bremen import-dataset: error: unknown task 'nope'")


def test_sweep_throughput_with_and_without_compile():
    import types

    from rich.console import Console

    from bremen_jax.sweep import report

    rows = [{"outer": 0, "point": 0, "seed": s, "ensemble_size": 3, "final_return": 1.0 + s,
             "best_return": 2.0, "final_score": None, "return_d1": 1.0, "bc_return_d1": 0.5}
            for s in range(4)]
    spec = types.SimpleNamespace(outer_fields=(), fields=(), seeds=(0, 1, 2, 3))
    # two programs: compile 60 + 40 s, run 12 + 8 s; 4 runs in 20 s and in 120 s, per hour
    summary = report.summarize(rows, spec, [{"compile_s": 60.0, "run_s": 12.0},
                                            {"compile_s": 40.0, "run_s": 8.0}])
    t = summary["timings"]
    assert (t["compile_s"], t["run_s"]) == (100.0, 20.0)
    assert t["runs_per_hour_excluding_compile"] == pytest.approx(720.0)
    assert t["runs_per_hour_including_compile"] == pytest.approx(120.0)
    line = ("Compile 100.0 s, run 20.0 s; 720 runs/hour excluding compile, 120 runs/hour "
            "including it")
    assert report.throughput_line(summary) == line
    assert f"{line}; padded runs 0." in report.summary_markdown(summary)
    console = Console(file=io.StringIO(), width=200)
    report.print_summary(summary, console)
    assert line in console.file.getvalue()


def test_quiet_leaves_absl_its_own_logger_class():
    """Entered before absl.logging is imported, the quiet block must not create a plain "absl"
    logger (absl would keep it, and orbax's thread errors would then name absl's file instead of
    orbax's, slipping past the run's write-error filter: two CI failures of the disk tests)."""
    import subprocess
    import sys

    code = ("import logging, sys\n"
            "from bremen_jax.cli.quiet import quiet_third_party\n"
            "assert 'absl.logging' not in sys.modules\n"
            "with quiet_third_party():\n"
            "    import absl.logging\n"
            "    lg = logging.getLogger('absl')\n"
            "    print(type(lg).__name__, len(lg.filters))\n"
            "print(len(lg.filters))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ABSLLogger", "1", "0"]
