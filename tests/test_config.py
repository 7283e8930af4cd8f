"""The config schema: every bad value raises ConfigError naming the field (before anything compiles,
also through ``bremen train``); the typed setter; load errors in one line; split is nested like the
file and derived from the schema; the shipped configs are valid and the test config stays tiny."""

import contextlib
import dataclasses

import jax
import jax.monitoring
import jax.numpy as jnp
import ml_collections
import pytest

from bremen_jax import config as config_lib
from bremen_jax.cli import main
from bremen_jax.config import ConfigError

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
SHIPPED = ["default", "halfcheetah", "ant", "hopper", "walker2d", "quick", "quick_tuned", "test"]


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


# ------------------------------------------------------------------ shipped configs, schema
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid(name):
    static, hp = config_lib.split(config_lib.load_config(name))
    assert static.trpo.iterations % static.trpo.chunk == 0
    assert float(hp.trpo.target_kl) > 0


def test_known_configs_are_the_shipped_modules():
    assert sorted(SHIPPED) == config_lib.known_configs()


def test_test_config_is_tiny():
    static, _ = config_lib.split(config_lib.load_config("test"))
    assert static.deploy.batch_size * static.deploy.num_deployments <= 2_000
    assert static.trpo.iterations <= 10 and static.bc.num_steps <= 100


def test_quick_tuned_is_quick_plus_the_measured_variant():
    """``bremen train``'s default is the learning-curves variant whose numbers its docstring and
    the README quote (quick protocol = quick + 10 episodes), and differs from quick only there;
    ``bremen offline`` keeps quick."""
    from bremen_jax.cli.runs import DEFAULT_CONFIG
    from experiments.learning_curves import BREMEN_VARIANTS

    variant = config_lib.apply_overrides(
        config_lib.load_config("quick"),
        BREMEN_VARIANTS["bremen_sampling_kl01_budget10_dis1_b32k_p20_h250w100"])
    tuned, quick = (config_lib.flatten(config_lib.load_config(n)) for n in ("quick_tuned", "quick"))
    assert config_lib.flatten(variant) == tuned
    assert {k for k in tuned if tuned[k] != quick[k]} == {
        "trpo.ratio_std", "trpo.target_kl", "trpo.kl_budget", "imagine.penalty",
        "deploy.batch_size", "dynamics.patience", "imagine.horizon", "imagine.warmup_horizon",
        "imagine.warmup_deployments"}
    assert tuned["deploy.batch_size"] == 2 * quick["deploy.batch_size"] == 32_000
    assert tuned["imagine.penalty_coef"] == 1.0
    # the paper's H = 250 (quick cuts it to 100), capped at 100 in deployments 1-2
    assert (tuned["imagine.horizon"], quick["imagine.horizon"]) == (250, 100)
    assert (tuned["imagine.warmup_horizon"], tuned["imagine.warmup_deployments"]) == (100, 2)
    assert quick["imagine.warmup_horizon"] == 0  # off: the original
    # the original's patience (quick halves it); the schema default is the original's value
    assert tuned["dynamics.patience"] == 20 == config_lib.load_config("default").dynamics.patience
    assert quick["dynamics.patience"] == 10
    assert quick["trpo.ratio_std"] == "policy" and quick["imagine.penalty"] == "none"
    assert DEFAULT_CONFIG == {"train": "quick_tuned", "offline": "quick"}


def test_default_config_is_the_schema_defaults():
    flat = config_lib.flatten(config_lib.load_config("default"))
    assert sorted(flat) == sorted(config_lib.SCHEMA)
    assert flat == {f.name: f.default for f in config_lib.FIELDS}
    # The paper's settings and the component classes agree with the one set of defaults.
    assert flat["trpo.target_kl"] == 0.1 and flat["checkpoint.every"] == 1
    assert float(config_lib.TRPOHParams.create().target_kl) == pytest.approx(0.1)
    assert config_lib.TRPOConfig().cg_iters == flat["trpo.cg_iters"]
    assert config_lib.DynamicsConfig().hidden_sizes == flat["dynamics.hidden_sizes"]
    for f in config_lib.FIELDS:
        assert f.kind in config_lib.KINDS and f.doc, f.name
        config_lib.check_value(f.name, f.default)  # every default passes its own check


def test_split_is_nested_like_the_file_and_hashable():
    cfg = _test_cfg("trpo.gamma=0.9", "policy.init_seed=-1", "precision=default")
    static, hp = config_lib.split(cfg)
    assert static.imagine.horizon == cfg.imagine.horizon == 20
    assert static.imagine.num_rollouts == cfg.imagine.batch_size // cfg.imagine.horizon
    assert static.deploy.collect_steps == cfg.deploy.batch_size // cfg.deploy.num_envs
    assert static.buffer_capacity == cfg.deploy.batch_size * cfg.deploy.num_deployments
    assert static.num_chunks == cfg.trpo.iterations // cfg.trpo.chunk
    assert static.policy.init_seed == -1 and static.policy.seed_or_none is None
    assert static.dynamics.precision is None and static.precision == "default"
    assert static.eval.num_episodes == cfg.eval.num_episodes
    assert hash(static) == hash(config_lib.split(cfg)[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        static.task = "hopper"
    assert hp.trpo.gamma.dtype == jnp.float32 and float(hp.trpo.gamma) == pytest.approx(0.9)
    assert hp.dynamics.num_active.dtype == jnp.int32
    assert float(hp.imagine.explore_sigma) == pytest.approx(cfg.imagine.explore_sigma)
    assert float(hp.trpo.value_learning_rate) == pytest.approx(cfg.trpo.value_learning_rate)
    assert len(jax.tree.leaves(hp)) == len([f for f in config_lib.FIELDS if f.kind == "traced"])


def test_kinds_come_from_the_schema():
    assert config_lib.is_static("imagine.horizon") and config_lib.is_static("trpo.chunk")
    assert not config_lib.is_static("trpo.target_kl")
    assert config_lib.kind_of("dynamics.num_active") == "traced"
    assert config_lib.kind_of("seed") == config_lib.kind_of("checkpoint.every") == "host"
    with pytest.raises(ConfigError, match="did you mean 'imagine.horizon'"):
        config_lib.is_static("imagine.horizn")
    # A host or traced field never changes StaticConfig; a static one does.
    static, _ = config_lib.split(_test_cfg())
    for name, value in [("seed", 7), ("checkpoint.max_to_keep", 9), ("trpo.target_kl", 0.3)]:
        assert config_lib.split(config_lib.override(_test_cfg(), {name: value}))[0] == static
    assert config_lib.split(_test_cfg("trpo.cg_iters=3"))[0] != static


# ------------------------------------------------------------------ per-field and cross-field rules
@pytest.mark.parametrize("override, match", [
    ("deploy.batch_size=-400", r"deploy.batch_size must be > 0, got -400"),
    ("dynamics.num_members=0", "dynamics.num_members must be > 0"),
    ("bc.num_steps=-1", "bc.num_steps must be > 0"),
    ("trpo.target_kl=-0.1", r"trpo.target_kl must be in \(0, 10\], got -0.1"),
    ("trpo.cg_damping=-1", r"trpo.cg_damping must be in \[0, 1000\], got -1"),
    ("trpo.gamma=1.5", r"trpo.gamma must be in \(0, 1\]"),
    ("trpo.gamma=0", r"trpo.gamma must be in \(0, 1\]"),
    ("trpo.lam=1.01", r"trpo.lam must be in \[0, 1\]"),
    ("trpo.ls_backtrack=1", r"trpo.ls_backtrack must be in \(0, 1\)"),
    ("dynamics.val_fraction=0", r"dynamics.val_fraction must be in \(0, 1\)"),
    ("checkpoint.every=0", "checkpoint.every must be >= 1"),
    ("backend='warp'", r"backend must be one of \['generalized', 'positional', 'spring', 'mjx'\]"),
    ("trpo.fvp=exact", r"trpo.fvp must be one of \['gauss_newton', 'hessian'\]"),
    ("deploy.num_deployments=2.5", "deploy.num_deployments must be an int"),
    ("trpo.target_kl='big'", "trpo.target_kl must be a number"),
    ("dynamics.hidden_sizes=(32, -1)", "dynamics.hidden_sizes must be a non-empty tuple"),
    ("dynamics.hidden_sizes=()", "dynamics.hidden_sizes must be a non-empty tuple"),
    ("trpo.target_kl=inf", "trpo.target_kl must be a finite number"),
    ("trpo.lam=nan", "trpo.lam must be a finite number"),
    ("dynamics.restore_best=1", "dynamics.restore_best expects true/false"),
    # absurd values (issue 13): the field and its accepted range
    ("bc.learning_rate=1e30", r"bc.learning_rate must be in \(0, 1\], got 1e\+30"),
    ("dynamics.learning_rate=1e6", r"dynamics.learning_rate must be in \(0, 1\], got 1000000"),
    ("dynamics.learning_rate=1e999", "dynamics.learning_rate must be a finite number"),
    ("trpo.value_learning_rate=2", r"trpo.value_learning_rate must be in \(0, 1\], got 2"),
    ("bc.learning_rate=0", r"bc.learning_rate must be in \(0, 1\], got 0"),
    ("dynamics.weight_decay=1e30", r"dynamics.weight_decay must be in \[0, 10000\], got 1e\+30"),
    ("dynamics.weight_decay=-1", r"dynamics.weight_decay must be in \[0, 10000\]"),
    ("trpo.target_kl=11", r"trpo.target_kl must be in \(0, 10\], got 11"),
    ("trpo.target_kl=0", r"trpo.target_kl must be in \(0, 10\], got 0"),
    ("trpo.cg_damping=1e4", r"trpo.cg_damping must be in \[0, 1000\], got 10000"),
    ("imagine.explore_sigma=10.5", r"imagine.explore_sigma must be in \[0, 10\], got 10.5"),
    ("imagine.explore_sigma=-0.1", r"imagine.explore_sigma must be in \[0, 10\]"),
    ("trpo.kl_penalty=1e5", r"trpo.kl_penalty must be in \[0, 10000\], got 100000"),
])
def test_bad_values_raise_config_error_naming_the_field(override, match):
    """Also the absurd values of issue 13 (each would poison a run with NaN/inf)."""
    with count_compiles() as compiles:
        with pytest.raises(ConfigError, match=match):
            config_lib.split(_test_cfg(override))
    assert not compiles


@pytest.mark.parametrize("override, match", [
    ("imagine.horizon=100", r"imagine.horizon \(100\) must be <= episode_length \(50\)"),
    ("imagine.batch_size=170", r"imagine.batch_size \(170\) must be divisible by imagine.horizon"),
    ("deploy.num_envs=7", r"deploy.batch_size \(400\) must be divisible by deploy.num_envs"),
    ("trpo.chunk=3", r"trpo.iterations \(4\) must be divisible by trpo.chunk \(3\)"),
    ("dynamics.num_active=4", r"dynamics.num_active \(4\) must be <= dynamics.num_members"),
    ("dynamics.batch_size=1000", r"dynamics.batch_size \(1000\) is larger than the training split"),
])
def test_cross_field_rules(override, match):
    with pytest.raises(ConfigError, match=match):
        config_lib.split(_test_cfg(override))


@pytest.mark.parametrize("field, value, match", [
    ("deploy.num_deployments", 2.5, "deploy.num_deployments must be an int"),
    ("deploy.num_envs", True, "deploy.num_envs must be an int"),
    ("trpo.target_kl", "big", "trpo.target_kl must be a number"),
    ("trpo.target_kl", float("nan"), "trpo.target_kl must be a finite number"),
    ("dynamics.weight_decay", float("inf"), "dynamics.weight_decay must be a finite number"),
    ("trpo.ls_check_kl", 0, "trpo.ls_check_kl must be a bool"),
    ("task", 3, "task must be a string"),
    ("policy.hidden_sizes", (64, True), "policy.hidden_sizes must be a non-empty tuple"),
])
def test_wrong_values_in_a_config_file(field, value, match):
    d = _test_cfg().to_dict()
    *path, leaf = field.split(".")
    node = d
    for part in path:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError, match=match):
        config_lib.split(ml_collections.ConfigDict(d))
    with pytest.raises(ConfigError, match=match):  # the typed setter checks the same way
        config_lib.override(_test_cfg(), {field: value})


def test_unknown_and_missing_fields():
    with pytest.raises(ConfigError, match="unknown config field 'trpo.targetkl'; did you mean "
                                          "'trpo.target_kl'"):
        _test_cfg("trpo.targetkl=0.1")
    with pytest.raises(ConfigError, match="did you mean 'imagine.horizon'"):  # right leaf, wrong section
        _test_cfg("trpo.horizon=5")
    with pytest.raises(ConfigError, match="unknown config field 'nope'; the fields are listed"):
        _test_cfg("nope=1")
    with pytest.raises(ConfigError, match="must look like field.sub=value"):
        _test_cfg("trpo.target_kl")
    cfg = _test_cfg()
    cfg.trpo.unknown_knob = 3
    with pytest.raises(ConfigError, match="unknown config field 'trpo.unknown_knob'"):
        config_lib.validate(cfg)
    cfg = ml_collections.ConfigDict(_test_cfg().to_dict())
    del cfg.eval
    with pytest.raises(ConfigError, match=r"missing field\(s\) \['eval.num_episodes', 'eval.model_return', "
                                            r"'eval.member_rollouts'\]"):
        config_lib.validate(cfg)


# ------------------------------------------------------------------ the typed setter
@pytest.mark.parametrize("field, text, value", [
    ("trpo.target_kl", "0.05", 0.05),
    ("dynamics.learning_rate", "1e-3", 1e-3),
    ("dynamics.weight_decay", "2", 2.0),
    ("deploy.num_envs", "16", 16),
    ("dynamics.restore_best", "true", True),
    ("dynamics.restore_best", "False", False),
    ("backend", "mjx", "mjx"),
    ("backend", "'mjx'", "mjx"),
    ("dynamics.hidden_sizes", "(64, 64)", (64, 64)),
    ("dynamics.hidden_sizes", "[32,32]", (32, 32)),
    ("policy.hidden_sizes", "16", (16,)),
])
def test_parse_value_parses_once_by_the_schema_type(field, text, value):
    parsed = config_lib.parse_value(field, text)
    assert parsed == value and type(parsed) is type(value)
    cfg = config_lib.apply_overrides(config_lib.load_config("test"), [f"{field}={text}"])
    assert config_lib.flatten(cfg)[field] == value


def test_override_sets_python_values_on_a_copy():
    base = config_lib.load_config("test")
    cfg = config_lib.override(base, {"trpo.target_kl": 0.05, "dynamics.hidden_sizes": [8, 8],
                                     "checkpoint.every": 4, "config.seed": 3})
    assert cfg.trpo.target_kl == 0.05 and cfg.dynamics.hidden_sizes == (8, 8)
    assert cfg.checkpoint.every == 4 and cfg.seed == 3
    assert base.trpo.target_kl == 0.1  # the input is not modified
    old = ml_collections.ConfigDict(base.to_dict())
    del old.checkpoint  # a run stored before the checkpoint section existed
    assert config_lib.override(old, {"checkpoint.every": 2}).checkpoint.every == 2


@pytest.mark.parametrize("override", [
    "bc.learning_rate=1", "dynamics.learning_rate=1e-9", "dynamics.weight_decay=0",
    "dynamics.weight_decay=1e4", "trpo.target_kl=10", "trpo.cg_damping=0", "trpo.cg_damping=1e3",
    "imagine.explore_sigma=0", "imagine.explore_sigma=10", "trpo.kl_penalty=1e4",
    "trpo.value_learning_rate=1"])
def test_range_ends_are_accepted(override):
    config_lib.split(_test_cfg(override))


def test_section_classes_check_with_the_schema():
    with pytest.raises(ConfigError, match="trpo.ls_backtrack must be in"):
        config_lib.TRPOConfig(ls_backtrack=1.5)
    with pytest.raises(ConfigError, match="bc.batch_size must be > 0"):
        config_lib.BCConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"dynamics.learning_rate must be in \(0, 1\]"):
        config_lib.DynamicsHParams.create(learning_rate=0.0)
    with pytest.raises(ConfigError, match=r"bc.learning_rate must be in \(0, 1\], got 1e\+30"):
        config_lib.BCHParams.create(1e30)
    with pytest.raises(ConfigError, match="has no traced field 'horizon'"):
        config_lib.ImagineHParams.create(horizon=3)
    assert config_lib.DynamicsConfig(hidden_sizes=[4, 4]).hidden_sizes == (4, 4)  # hashable


# ------------------------------------------------------------------ loading
def test_load_by_name_or_path(tmp_path):
    assert config_lib.load_config("ant").backend == "mjx"
    path = tmp_path / "mine.py"
    path.write_text("from bremen_jax.configs import test\n\n"
                    "def get_config():\n    c = test.get_config()\n    c.seed = 5\n    return c\n")
    assert config_lib.load_config(path).seed == 5
    assert config_lib.load_config(str(path)).seed == 5


@pytest.mark.parametrize("source, match", [
    (None, r"config 'no_such_config' not found; expected one of \[.*'quick'"),
    ("x = 1\n", "defines no get_config"),
    ("def get_config():\n    return {'a': 1}\n", "returned a dict, expected an ml_collections"),
    ("def get_config():\n    raise RuntimeError('boom')\n", "RuntimeError: boom"),
    ("def get_config(:\n", "SyntaxError"),
    ("import no_such_module_xyz\n", "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
])
def test_load_errors_are_one_line(tmp_path, source, match):
    if source is None:
        name = "no_such_config"
    else:
        name = tmp_path / "bad.py"
        name.write_text(source)
    with pytest.raises(ConfigError, match=match) as e:
        config_lib.load_config(name)
    assert "\n" not in str(e.value)
    if source is not None:
        assert "bad.py" in str(e.value)
    with pytest.raises(ConfigError, match="not found"):
        config_lib.load_config(tmp_path / "missing.py")


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
    rc = main(["train", "--config", "test", "--workdir", str(workdir), "--verbosity"])
    assert rc == 2 and "unrecognized argument '--verbosity'" in capsys.readouterr().err
