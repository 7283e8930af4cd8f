"""Configuration: an ``ml_collections.ConfigDict`` split once into ``StaticConfig`` + ``HParams``.

* :class:`StaticConfig` (frozen, hashable) holds everything that sets a shape, a trip count or a code
  path; changing it recompiles.
* :class:`HParams` (a pytree of float32/int32 scalars) holds the tunables; a sweep ``vmap``-s over it
  and changing it never recompiles.

The schema is ``experiments/configs/default.py``; :func:`validate` rejects unknown keys, wrong types
and inconsistent values with a message naming the field, before anything compiles.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import warnings
from typing import Any, Sequence

import flax.struct
import jax.numpy as jnp
import ml_collections

from bremen_jax.algo.baseline import ValueHParams
from bremen_jax.algo.bc import BCConfig, BCHParams
from bremen_jax.algo.trpo import TRPOConfig, TRPOHParams
from bremen_jax.models.dynamics import DynamicsConfig, DynamicsHParams

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "configs"

_CHOICES = {
    "backend": ("generalized", "positional", "spring", "mjx"),
    "precision": ("highest", "tensorfloat32", "bfloat16", "default"),
    "bc.data": ("latest", "all"),
    "imagine.member_sampling": ("per_step", "per_rollout"),
    "imagine.start_states": ("reset", "dataset"),
    "imagine.exploration": ("constant", "learned"),
    "trpo.baseline": ("linear", "mlp"),
    "trpo.fvp": ("gauss_newton", "hessian"),
    "trpo.line_search": ("sequential", "parallel"),
}
_POSITIVE_INTS = (
    "episode_length", "dynamics.num_members", "dynamics.batch_size", "dynamics.max_epochs",
    "dynamics.eval_every", "dynamics.patience", "bc.batch_size", "bc.num_steps", "imagine.horizon",
    "imagine.batch_size", "trpo.cg_iters", "trpo.ls_steps", "trpo.iterations", "trpo.chunk",
    "deploy.num_deployments", "deploy.batch_size", "deploy.num_envs", "eval.num_episodes",
    "dynamics.num_active",
)
_POSITIVE_FLOATS = (
    "dynamics.learning_rate", "bc.learning_rate", "trpo.target_kl", "trpo.gamma",
    "trpo.value_learning_rate",
)
_NONNEG_FLOATS = (
    "dynamics.weight_decay", "trpo.cg_damping", "trpo.kl_penalty", "imagine.explore_sigma", "trpo.lam",
)


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what was expected."""


@dataclasses.dataclass(frozen=True)
class StaticConfig:
    """Shapes, trip counts and code paths. Hashable; a new value recompiles."""

    task: str
    backend: str
    episode_length: int
    precision: str
    dynamics: DynamicsConfig
    val_fraction: float
    policy_hidden_sizes: tuple[int, ...]
    policy_init_seed: int | None
    bc: BCConfig
    bc_data: str
    horizon: int
    imagined_batch: int
    member_sampling: str
    start_states: str
    exploration: str
    keep_partial_paths: bool
    trpo: TRPOConfig
    baseline: str
    bootstrap_truncation: bool
    trpo_iterations: int
    trpo_chunk: int
    num_deployments: int
    deploy_batch: int
    collect_envs: int
    eval_episodes: int

    @property
    def num_rollouts(self) -> int:
        """B: parallel imagined rollouts per TRPO iteration (= imagined_batch / horizon)."""
        return self.imagined_batch // self.horizon

    @property
    def collect_steps(self) -> int:
        return self.deploy_batch // self.collect_envs

    @property
    def buffer_capacity(self) -> int:
        return self.deploy_batch * self.num_deployments


@flax.struct.dataclass
class HParams:
    """Tunables, traced. Leaves are float32/int32 scalars (or ``[R]`` arrays for a sweep)."""

    dynamics: DynamicsHParams
    bc: BCHParams
    trpo: TRPOHParams
    value: ValueHParams
    gamma: Any
    lam: Any
    kl_penalty: Any
    explore_sigma: Any


def default_config() -> ml_collections.ConfigDict:
    return load_config("default")


def load_config(name_or_path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Loads ``get_config()`` from a file path or a name in ``experiments/configs``."""
    path = pathlib.Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.py"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise ConfigError(f"config file {str(name_or_path)!r} not found; expected a path to a .py "
                          f"file defining get_config() or one of {known}")
    spec = importlib.util.spec_from_file_location(f"bremen_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} defines no get_config()")
    return module.get_config()


def _get(cfg: ml_collections.ConfigDict, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in cfg.items():
        name = f"{prefix}{k}"
        if isinstance(v, ml_collections.ConfigDict):
            out.update(_flat_keys(v, name + "."))
        else:
            out[name] = v
    return out


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Applies ``field.sub=value`` strings (values parsed as Python literals when possible)."""
    import ast

    cfg = ml_collections.ConfigDict(cfg.to_dict())
    known = _flat_keys(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like field.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip().removeprefix("config.")
        if key not in known:
            raise ConfigError(f"unknown config field {key!r}; known fields: {sorted(known)}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        old = known[key]
        if isinstance(old, bool) and not isinstance(value, bool):
            raise ConfigError(f"config field {key!r} expects true/false (True/False), got {raw!r}")
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        parent = cfg
        *path, leaf = key.split(".")
        for part in path:
            parent = parent[part]
        try:
            parent[leaf] = value
        except TypeError:  # ConfigDict's type safety: report it as a config error on the field
            expected = {bool: "a bool", int: "an int", float: "a number", str: "a string",
                        tuple: "a tuple"}.get(type(old), type(old).__name__)
            raise ConfigError(f"{key} must be {expected}, got {raw!r}") from None
        known[key] = value
    return cfg


class UnstablePhysicsWarning(UserWarning):
    """A task/backend pair whose real rollouts are known to reach NaN (see ``_UNSTABLE_BACKENDS``)."""


# (task, backend) -> why and what to use instead. Measured: 64 envs x 1000 uniform-random steps,
# seed 0 (experiments/configs/ant.py).
_UNSTABLE_BACKENDS = {
    ("ant", "generalized"): (
        "Brax's generalized ant blows up without BREMEN's (absent) termination: under random "
        "actions |obs| reaches the thousands and NaN within 400 steps, which poisons the dataset "
        "and the dynamics fit; use backend='mjx' (as experiments/configs/ant.py does)"),
}


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` naming the first bad field."""
    schema = _flat_keys(default_config())
    flat = _flat_keys(cfg)
    unknown = sorted(set(flat) - set(schema))
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(schema)}")
    missing = sorted(set(schema) - set(flat))
    if missing:
        raise ConfigError(f"config is missing field(s) {missing}")
    for key, ref in schema.items():
        v = flat[key]
        if isinstance(ref, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"{key} must be a bool, got {v!r}")
        elif isinstance(ref, int):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{key} must be an int, got {v!r}")
        elif isinstance(ref, float):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{key} must be a number, got {v!r}")
        elif isinstance(ref, str):
            if not isinstance(v, str):
                raise ConfigError(f"{key} must be a string, got {v!r}")
        elif isinstance(ref, tuple):
            if not isinstance(v, (tuple, list)) or not v or not all(
                    isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
                raise ConfigError(f"{key} must be a non-empty tuple of positive ints, got {v!r}")
    for key in _POSITIVE_INTS:
        if flat[key] <= 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]}")
    for key in _POSITIVE_FLOATS:
        if not flat[key] > 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]}")
    for key in _NONNEG_FLOATS:
        if not flat[key] >= 0:
            raise ConfigError(f"{key} must be >= 0, got {flat[key]}")
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key} must be one of {list(choices)}, got {flat[key]!r}")
    if not 0.0 < flat["dynamics.val_fraction"] < 1.0:
        raise ConfigError(f"dynamics.val_fraction must be in (0, 1), got {flat['dynamics.val_fraction']}")
    if not 0.0 < flat["trpo.gamma"] <= 1.0:
        raise ConfigError(f"trpo.gamma must be in (0, 1], got {flat['trpo.gamma']}")
    if not 0.0 <= flat["trpo.lam"] <= 1.0:
        raise ConfigError(f"trpo.lam must be in [0, 1], got {flat['trpo.lam']}")
    if flat["dynamics.num_active"] > flat["dynamics.num_members"]:
        raise ConfigError(f"dynamics.num_active ({flat['dynamics.num_active']}) must be <= "
                          f"dynamics.num_members ({flat['dynamics.num_members']})")
    if flat["imagine.horizon"] > flat["episode_length"]:
        raise ConfigError(f"imagine.horizon ({flat['imagine.horizon']}) must be <= episode_length "
                          f"({flat['episode_length']})")
    if flat["imagine.batch_size"] % flat["imagine.horizon"]:
        raise ConfigError(f"imagine.batch_size ({flat['imagine.batch_size']}) must be divisible by "
                          f"imagine.horizon ({flat['imagine.horizon']})")
    if flat["deploy.batch_size"] % flat["deploy.num_envs"]:
        raise ConfigError(f"deploy.batch_size ({flat['deploy.batch_size']}) must be divisible by "
                          f"deploy.num_envs ({flat['deploy.num_envs']})")
    if flat["trpo.iterations"] % flat["trpo.chunk"]:
        raise ConfigError(f"trpo.iterations ({flat['trpo.iterations']}) must be divisible by "
                          f"trpo.chunk ({flat['trpo.chunk']})")
    n_train = int(flat["deploy.batch_size"] * (1 - flat["dynamics.val_fraction"]))
    if n_train < flat["dynamics.batch_size"]:
        raise ConfigError(f"dynamics.batch_size ({flat['dynamics.batch_size']}) is larger than the "
                          f"training split of one deployment ({n_train} rows)")
    if not 0 < flat["trpo.ls_backtrack"] < 1:
        raise ConfigError(f"trpo.ls_backtrack must be in (0, 1), got {flat['trpo.ls_backtrack']}")
    unstable = _UNSTABLE_BACKENDS.get((flat["task"], flat["backend"]))
    if unstable:
        warnings.warn(f"task={flat['task']!r} with backend={flat['backend']!r}: {unstable}",
                      UnstablePhysicsWarning, stacklevel=2)


def split(cfg: ml_collections.ConfigDict) -> tuple[StaticConfig, HParams]:
    """Validates ``cfg`` and splits it into (StaticConfig, HParams)."""
    validate(cfg)
    d, b, im, t, dp = cfg.dynamics, cfg.bc, cfg.imagine, cfg.trpo, cfg.deploy
    static = StaticConfig(
        task=cfg.task, backend=cfg.backend, episode_length=cfg.episode_length,
        precision=cfg.precision,
        dynamics=DynamicsConfig(num_members=d.num_members, hidden_sizes=tuple(d.hidden_sizes),
                                batch_size=d.batch_size, max_epochs=d.max_epochs,
                                eval_every=d.eval_every, patience=d.patience,
                                restore_best=d.restore_best,
                                precision=None if cfg.precision == "default" else cfg.precision),
        val_fraction=float(d.val_fraction),
        policy_hidden_sizes=tuple(cfg.policy.hidden_sizes),
        policy_init_seed=None if cfg.policy.init_seed < 0 else int(cfg.policy.init_seed),
        bc=BCConfig(batch_size=b.batch_size, num_steps=b.num_steps, reinit=b.reinit,
                    reset_optimizer=b.reset_optimizer),
        bc_data=b.data,
        horizon=im.horizon, imagined_batch=im.batch_size, member_sampling=im.member_sampling,
        start_states=im.start_states, exploration=im.exploration,
        keep_partial_paths=im.keep_partial_paths,
        trpo=TRPOConfig(cg_iters=t.cg_iters, ls_steps=t.ls_steps, ls_backtrack=float(t.ls_backtrack),
                        accept_ratio=float(t.accept_ratio), ls_check_kl=t.ls_check_kl,
                        fvp=t.fvp, line_search=t.line_search, shs_from_cg=t.shs_from_cg),
        baseline=t.baseline, bootstrap_truncation=t.bootstrap_truncation,
        trpo_iterations=t.iterations, trpo_chunk=t.chunk,
        num_deployments=dp.num_deployments, deploy_batch=dp.batch_size, collect_envs=dp.num_envs,
        eval_episodes=cfg.eval.num_episodes,
    )
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    hp = HParams(
        dynamics=DynamicsHParams(learning_rate=f32(d.learning_rate), weight_decay=f32(d.weight_decay),
                                 num_active=jnp.asarray(d.num_active, jnp.int32)),
        bc=BCHParams(learning_rate=f32(b.learning_rate)),
        trpo=TRPOHParams(target_kl=f32(t.target_kl), cg_damping=f32(t.cg_damping)),
        value=ValueHParams(learning_rate=f32(t.value_learning_rate)),
        gamma=f32(t.gamma), lam=f32(t.lam), kl_penalty=f32(t.kl_penalty),
        explore_sigma=f32(im.explore_sigma),
    )
    return static, hp
