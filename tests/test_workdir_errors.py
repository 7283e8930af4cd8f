"""Work directories that cannot be used, malformed files inside one, and the sweep's lock: each
refused in one line naming the path and what was expected, exit 2, no traceback, before anything
compiles, every file already there unchanged (issue 13, parts 1 and 4)."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil

import pytest
from errcheck import can_mount, mount_tmpfs, refused, umount

from bremen_jax import config as config_lib
from bremen_jax.run import host as host_lib
from bremen_jax.run import run_host
from bremen_jax.run.lock import LOCK_NAME, WorkdirLock
from bremen_jax.sweep import program as sweep_program

COMMANDS = {
    "train": ["train", "--config", "test", "--no-progress"],
    # An existing file that is no dataset: the dataset's existence is checked before the work
    # directory, its content only after the work directory was claimed.
    "offline": ["offline", "--config", "test", "--no-progress", "--dataset",
                str(pathlib.Path(__file__).parent / "conftest.py")],
    "sweep": ["sweep", "--config", "test"],
}


@pytest.fixture
def no_compile(monkeypatch):
    """Compiling anything fails the test: every refusal here comes before compiling."""
    def fail(*args, **kwargs):
        raise AssertionError("compiled before the work directory was checked")

    monkeypatch.setattr(host_lib, "compile_many", fail)
    monkeypatch.setattr(sweep_program, "compile_sweep", fail)


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    """An empty read-only directory: a read-only tmpfs where the test may mount (root), else
    os-level creation under it raising EROFS (chmod does not stop root)."""
    target = tmp_path / "ro"
    if can_mount(tmp_path / "probe") is None:
        mount_tmpfs(target, "size=64k,ro")
        yield target
        umount(target)
        return
    target.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(real):
        def call(path, *args, **kwargs):
            if str(path).startswith(str(target)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    yield target


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("below", [False, True])
def test_workdir_on_a_regular_file(tmp_path, capsys, no_compile, command, below):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    work = afile / "sub" if below else afile
    refused(capsys, [*COMMANDS[command], "--workdir", str(work)],
            f"cannot use {work} as the work directory: {afile} is a file, not a directory",
            "expected a directory that can be created and written", watch=(tmp_path,))


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("sub", ["", "new/sub"])
def test_unwritable_workdir(tmp_path, capsys, no_compile, read_only_dir, command, sub):
    work = read_only_dir / sub if sub else read_only_dir
    refused(capsys, [*COMMANDS[command], "--workdir", str(work)],
            f"cannot use {work} as the work directory: Read-only file system",
            watch=(read_only_dir,))
    assert not any(read_only_dir.iterdir())


# -- malformed files inside a work directory, on --resume -----------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    run_host(config_lib.load_config("test"), workdir, progress=False)
    return workdir


def _metas(w: pathlib.Path) -> list[pathlib.Path]:
    return sorted((w / "checkpoints").glob("*/meta/metadata"))


def _edit_metas(w: pathlib.Path, edit) -> None:
    for f in _metas(w):
        f.write_text(edit(f.read_text()))


def _moved_position(text: str) -> str:
    meta = json.loads(text)
    meta["position"]["chunk"] += 1
    return json.dumps(meta)


# case -> (how the file is damaged, what the error line must say)
DAMAGE = {
    "config_garbage": (lambda w: (w / "config.json").write_text("{not json"),
                       "config.json is not valid JSON (Expecting property name"),
    "config_list": (lambda w: (w / "config.json").write_text("[1, 2]"),
                    "config.json holds an array; expected the run's config (a JSON object)"),
    "config_unknown_field": (
        lambda w: (w / "config.json").write_text(json.dumps(
            {**json.loads((w / "config.json").read_text()), "colour": "red"})),
        "config.json: unknown config field 'colour'"),
    "config_bad_value": (
        lambda w: (w / "config.json").write_text(json.dumps(
            {**json.loads((w / "config.json").read_text()), "seed": "three"})),
        "config.json: seed must be an int, got 'three'"),
    "run_garbage": (lambda w: (w / "run.json").write_text("garbage"),
                    "run.json is not valid JSON (Expecting value"),
    "run_list": (lambda w: (w / "run.json").write_text("[1]"),
                 "run.json holds an array; expected the run's description (a JSON object)"),
    "run_kind": (lambda w: (w / "run.json").write_text('{"kind": "bogus"}'),
                 "run.json names the run kind 'bogus'; expected 'train' or 'offline'"),
    "summary_garbage": (lambda w: (w / "summary.json").write_text("{{"),
                        "summary.json is not valid JSON"),
    "summary_list": (lambda w: (w / "summary.json").write_text("[3]"),
                     "summary.json holds an array; expected the run's summary (a JSON object)"),
    "meta_garbage": (lambda w: _edit_metas(w, lambda t: "xx{"),
                     "no checkpoint of the run can be read: checkpoint"),
    "meta_list": (lambda w: _edit_metas(w, lambda t: "[]"),
                  "meta is not what bremen_jax writes"),
    "meta_position": (lambda w: _edit_metas(w, _moved_position),
                      "meta) fails its checksum"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_malformed_file_on_resume(finished_run, tmp_path, capsys, no_compile, case):
    work = tmp_path / "run"
    shutil.copytree(finished_run, work)
    damage, message = DAMAGE[case]
    damage(work)
    line = refused(capsys, ["train", "--resume", "--workdir", str(work), "--no-progress"],
                   message, watch=(work,))
    named = {"config": "config.json", "run": "run.json", "summary": "summary.json",
             "meta": str(work / "checkpoints")}[case.split("_")[0]]
    assert named in line
    if case.startswith("meta"):  # every checkpoint is named, and none was moved aside
        assert all(str(f.parent) in line for f in _metas(work))


# -- the sweep's lock ------------------------------------------------------------------------------
def test_a_second_sweep_on_a_directory_in_use_is_refused(tmp_path, capsys, no_compile):
    work = tmp_path / "sweep"
    work.mkdir()
    held = WorkdirLock(work)  # another sweep (or run) holds the directory
    try:
        refused(capsys, ["sweep", "--config", "test", "--workdir", str(work)],
                f"work directory {work} is in use by pid {os.getpid()}", watch=(work,))
    finally:
        held.release()
    assert not any(work.iterdir())


def test_the_sweep_frees_its_lock_when_it_fails(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(sweep_program, "compile_sweep", boom)
    work = tmp_path / "sweep"
    refused(capsys, ["sweep", "--config", "test", "--workdir", str(work)], "boom")
    assert not (work / LOCK_NAME).exists()
    WorkdirLock(work).release()  # free for the next one


def test_stored_config_from_before_new_fields_loads_with_their_old_behaviour(tmp_path):
    """A run stored before dynamics.reward_model/done_threshold/compile_effort existed resumes
    with the defaults that reproduce it (auto = analytic for built-in tasks; XLA's default
    level); a missing static field that is not backward compatible is still refused."""
    from bremen_jax.run import load_run_config

    data = json.loads(config_lib.load_config("test").to_json())
    del data["dynamics"]["reward_model"], data["dynamics"]["done_threshold"]
    del data["compile_effort"]  # runs stored before it compiled at XLA's default level
    (tmp_path / "config.json").write_text(json.dumps(data))
    cfg = load_run_config(tmp_path)
    assert cfg.dynamics.reward_model == "auto" and cfg.dynamics.done_threshold == 0.5
    assert cfg.compile_effort == "default"
    del data["dynamics"]["num_members"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="num_members"):
        load_run_config(tmp_path)
