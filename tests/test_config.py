"""Config validation: every bad value raises ConfigError naming the field, before anything compiles
(also through ``bremen train``); the shipped configs are valid; the test config stays tiny."""

import contextlib
import warnings

import jax
import jax.monitoring
import ml_collections
import pytest

from bremen_jax import config as config_lib
from bremen_jax.cli import main
from bremen_jax.config import ConfigError

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compiles():
    events = []

    def listener(name, secs, **kwargs):
        if name == COMPILE_EVENT:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _test_cfg(*overrides):
    return config_lib.apply_overrides(config_lib.load_config("test"), list(overrides))


@pytest.mark.parametrize("name", ["default", "halfcheetah", "ant", "hopper", "walker2d", "quick",
                                  "test"])
def test_shipped_configs_are_valid(name):
    static, hp = config_lib.split(config_lib.load_config(name))
    assert static.trpo_iterations % static.trpo_chunk == 0
    assert float(hp.trpo.target_kl) > 0


@pytest.mark.parametrize("name", ["default", "halfcheetah", "ant", "hopper", "walker2d", "quick",
                                  "test"])
def test_shipped_configs_use_stable_physics(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", config_lib.UnstablePhysicsWarning)
        config_lib.validate(config_lib.load_config(name))


def test_ant_on_generalized_warns_and_names_the_fix():
    cfg = config_lib.apply_overrides(config_lib.load_config("ant"), ["backend=generalized"])
    with pytest.warns(config_lib.UnstablePhysicsWarning, match="backend='mjx'"):
        config_lib.validate(cfg)
    assert config_lib.load_config("ant").backend == "mjx"


def test_test_config_is_tiny():
    static, _ = config_lib.split(config_lib.load_config("test"))
    assert static.deploy_batch * static.num_deployments <= 2_000
    assert static.trpo_iterations <= 10 and static.bc.num_steps <= 100


@pytest.mark.parametrize("override, match", [
    ("deploy.batch_size=-400", "deploy.batch_size must be > 0"),
    ("dynamics.num_members=0", "dynamics.num_members must be > 0"),
    ("bc.num_steps=-1", "bc.num_steps must be > 0"),
    ("trpo.target_kl=-0.1", "trpo.target_kl must be > 0"),
    ("imagine.horizon=100", r"imagine.horizon \(100\) must be <= episode_length \(50\)"),
    ("imagine.batch_size=170", r"imagine.batch_size \(170\) must be divisible by imagine.horizon"),
    ("deploy.num_envs=7", r"deploy.batch_size \(400\) must be divisible by deploy.num_envs"),
    ("trpo.chunk=3", r"trpo.iterations \(4\) must be divisible by trpo.chunk \(3\)"),
    ("dynamics.num_active=4", r"dynamics.num_active \(4\) must be <= dynamics.num_members"),
    ("trpo.gamma=1.5", r"trpo.gamma must be in \(0, 1\]"),
    ("backend='warp'", "backend must be one of"),
    ("deploy.num_deployments=2.5", "deploy.num_deployments must be an int"),
    ("trpo.target_kl='big'", "trpo.target_kl must be a number"),
    ("task=3", "task must be a string"),
    ("dynamics.hidden_sizes=(32, -1)", "dynamics.hidden_sizes must be a non-empty tuple"),
    ("dynamics.batch_size=1000", "dynamics.batch_size .* is larger than the training split"),
])
def test_bad_values_raise_config_error_naming_the_field(override, match):
    with count_compiles() as compiles:
        with pytest.raises(ConfigError, match=match):
            config_lib.split(_test_cfg(override))
    assert not compiles


@pytest.mark.parametrize("field, value, match", [
    ("deploy.num_deployments", 2.5, "deploy.num_deployments must be an int"),
    ("deploy.num_envs", True, "deploy.num_envs must be an int"),
    ("trpo.target_kl", "big", "trpo.target_kl must be a number"),
    ("trpo.ls_check_kl", 0, "trpo.ls_check_kl must be a bool"),
    ("task", 3, "task must be a string"),
])
def test_wrong_types_in_a_config_file(field, value, match):
    d = _test_cfg().to_dict()
    *path, leaf = field.split(".")
    node = d
    for part in path:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError, match=match):
        config_lib.split(ml_collections.ConfigDict(d))


def test_wrong_bool_type_and_unknown_keys():
    with pytest.raises(ConfigError, match="expects true/false"):
        _test_cfg("dynamics.restore_best=1")
    with pytest.raises(ConfigError, match="unknown config field 'trpo.targetkl'"):
        _test_cfg("trpo.targetkl=0.1")
    with pytest.raises(ConfigError, match="must look like field.sub=value"):
        _test_cfg("trpo.target_kl")
    cfg = _test_cfg()
    cfg.trpo.unknown_knob = 3
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['trpo.unknown_knob'\]"):
        config_lib.validate(cfg)
    cfg = ml_collections.ConfigDict(_test_cfg().to_dict())
    del cfg.eval
    with pytest.raises(ConfigError, match="missing field"):
        config_lib.validate(cfg)
    with pytest.raises(ConfigError, match="not found"):
        config_lib.load_config("no_such_config")


def test_cli_rejects_bad_config_before_compiling_or_writing(tmp_path, capsys):
    workdir = tmp_path / "run"
    with count_compiles() as compiles:
        rc = main(["train", "--config", "test", "--workdir", str(workdir), "--no-progress",
                   "--config.imagine.horizon=100"])
    assert rc == 2
    assert not compiles
    assert not workdir.exists()
    assert "imagine.horizon (100) must be <= episode_length" in capsys.readouterr().err
    rc = main(["train", "--config", "test", "--workdir", str(workdir), "--config.nope=1"])
    assert rc == 2 and "unknown config field 'nope'" in capsys.readouterr().err
    rc = main(["train", "--config", "test", "--workdir", str(workdir), "--verbose"])
    assert rc == 2 and "unrecognized argument '--verbose'" in capsys.readouterr().err
