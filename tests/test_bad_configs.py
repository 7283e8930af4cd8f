"""Bad config and sweep files, and integers that do not fit: each refused before anything is
written or compiled, in one line naming the file (or field) and what was expected, exit 2, no
traceback, every file already there unchanged (issue 13, part 4)."""

from __future__ import annotations

import pytest
from errcheck import refused

from bremen_jax import config as config_lib
from bremen_jax.config.checks import INT32_MAX, INT32_MIN

_TEST_CONFIG = ("from bremen_jax.configs import test\n\n\n"
                "def get_config():\n    return test.get_config()\n")

# (file body, what the error line must say)
BAD_CONFIGS = {
    "syntax_error": ("def get_config(:\n    pass\n", "SyntaxError: invalid syntax"),
    "raises": ("def get_config():\n    raise RuntimeError('boom')\n",
               "get_config(): RuntimeError: boom"),
    "missing_import": ("import no_such_module_xyz\n",
                       "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    "returns_none": ("def get_config():\n    return None\n",
                     "get_config() returned a NoneType, expected an ml_collections.ConfigDict"),
    "returns_dict": ("def get_config():\n    return {'seed': 1}\n",
                     "get_config() returned a dict, expected an ml_collections.ConfigDict"),
    "no_get_config": ("x = 1\n", "defines no get_config(); expected a function get_config()"),
    "exits": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    "seed_too_big": (_TEST_CONFIG.replace(
        "return test.get_config()", "c = test.get_config()\n    c.seed = 2 ** 70\n    return c"),
        f"seed must be an int in [{INT32_MIN}, {INT32_MAX}]"),
}

BAD_SWEEPS = {
    "syntax_error": ("def get_sweep(:\n", "SyntaxError: invalid syntax"),
    "missing_import": ("import no_such_module_xyz\n", "ModuleNotFoundError"),
    "exits": ("raise SystemExit('no')\n", "SystemExit: no"),
    "no_get_sweep": (_TEST_CONFIG, "defines no get_sweep(); expected get_sweep()"),
    "no_config": ("def get_sweep():\n    return {}\n", "defines neither get_config() nor base"),
    "get_sweep_raises": (_TEST_CONFIG + "\n\ndef get_sweep():\n    raise KeyError('nope')\n",
                         "get_sweep(): KeyError: 'nope'"),
    "get_config_raises": (("def get_config():\n    return 1 / 0\n\n\n"
                           "def get_sweep():\n    return {}\n"),
                          "get_config(): ZeroDivisionError: division by zero"),
    "get_sweep_none": (_TEST_CONFIG + "\n\ndef get_sweep():\n    return None\n",
                       "get_sweep() returned a NoneType, expected a dict"),
    "get_config_none": (("def get_config():\n    return None\n\n\n"
                         "def get_sweep():\n    return {}\n"),
                        "get_config() returned a NoneType, expected an ml_collections.ConfigDict"),
    "base_is_broken": ("base = {broken!r}\n\n\ndef get_sweep():\n    return {{}}\n",
                       "get_config(): RuntimeError: boom"),
    "seed_too_big": ("base = 'test'\n\n\ndef get_sweep():\n    return {'seeds': [2 ** 70]}\n",
                     "sweep 'seeds' must be distinct ints in [0, 2**31)"),
    "point_too_big": (("base = 'test'\n\n\ndef get_sweep():\n"
                       "    return {'points': [{'dynamics.num_active': 2 ** 40}]}\n"),
                      f"dynamics.num_active must be an int > 0 and <= {INT32_MAX}"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["train", "offline"])
def test_bad_config_file(tmp_path, capsys, command, case):
    body, message = BAD_CONFIGS[case]
    path = tmp_path / "configs" / f"{case}.py"
    path.parent.mkdir()
    path.write_text(body)
    work = tmp_path / "run"
    argv = [command, "--config", str(path), "--workdir", str(work), "--no-progress"]
    if command == "offline":
        argv += ["--dataset", str(tmp_path / "no.npz")]
    line = refused(capsys, argv, message, watch=(tmp_path,))
    if case != "seed_too_big":
        assert str(path) in line
    assert not work.exists()


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_bad_sweep_file(tmp_path, capsys, case):
    body, message = BAD_SWEEPS[case]
    broken = tmp_path / "configs" / "broken.py"
    broken.parent.mkdir()
    broken.write_text(BAD_CONFIGS["raises"][0])
    path = tmp_path / "configs" / f"sweep_{case}.py"
    path.write_text(body.format(broken=str(broken)) if case == "base_is_broken" else body)
    work = tmp_path / "sweep"
    line = refused(capsys, ["sweep", "--config", str(path), "--workdir", str(work)], message,
                   watch=(tmp_path,))
    if case not in ("seed_too_big", "point_too_big"):  # these name the sweep key or point
        assert str(broken if case == "base_is_broken" else path) in line
    assert not work.exists()


@pytest.mark.parametrize("flags, message", [
    (["--seed", str(2 ** 70)], (f"seed must be an int in [{INT32_MIN}, {INT32_MAX}] (it is stored "
                               f"as int32), got {2 ** 70}")),
    ([f"--config.seed={2 ** 70}"], f"seed must be an int in [{INT32_MIN}, {INT32_MAX}]"),
    ([f"--config.seed={-2 ** 40}"], f"seed must be an int in [{INT32_MIN}, {INT32_MAX}]"),
    ([f"--config.deploy.batch_size={2 ** 31}"],
     f"deploy.batch_size must be an int > 0 and <= {INT32_MAX} (it is stored as int32)"),
    ([f"--config.dynamics.num_active={2 ** 33}"],
     f"dynamics.num_active must be an int > 0 and <= {INT32_MAX}"),
    ([f"--config.checkpoint.every={2 ** 63}"],
     f"checkpoint.every must be an int >= 1 and <= {INT32_MAX}"),
    ([f"--config.dynamics.hidden_sizes=(32,{2 ** 31})"],
     f"dynamics.hidden_sizes must hold ints <= {INT32_MAX} (int32)"),
    (["--config.seed=" + "9" * 5000], "seed must be an int"),
])
def test_integers_that_do_not_fit_are_refused_with_the_range(tmp_path, capsys, flags, message):
    work = tmp_path / "run"
    refused(capsys, ["train", "--config", "test", "--workdir", str(work), "--no-progress", *flags],
            message)
    assert not work.exists()


def test_integer_range_in_the_library_and_at_the_bounds():
    cfg = config_lib.load_config("test")
    for seed in (INT32_MIN, 0, INT32_MAX):
        config_lib.validate(config_lib.override(cfg, {"seed": seed}))
    for bad in (INT32_MAX + 1, INT32_MIN - 1, 2 ** 70):
        with pytest.raises(config_lib.ConfigError, match=r"seed must be an int in \["):
            config_lib.override(cfg, {"seed": bad})
    cfg.seed = 2 ** 64  # set behind the setter's back: validate refuses it
    with pytest.raises(config_lib.ConfigError, match="stored as int32"):
        config_lib.validate(cfg)
