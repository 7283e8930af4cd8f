"""Validation generated from the schema: one per-field check, plus a few named cross-field rules.

:func:`check_value` is the only place that knows what a value of a field may be; :func:`validate`,
the typed setter (:mod:`bremen_jax.config.setter`) and the section dataclasses all call it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping

import ml_collections

from bremen_jax.config.schema import SCHEMA, ConfigError, Field, field, suggest

_TYPE_WORDS = {bool: "a bool (true/false)", int: "an int", float: "a number", str: "a string",
               tuple: "a non-empty tuple of positive ints"}
# Every int field ends up an int32: a leaf of HParams (traced), a shape or trip count (static), or
# a seed (sweeps stack seeds as int32; the host driver's key must equal the sweep's).
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _coerce(f: Field, value: Any) -> Any:
    """``value`` as ``f.type`` (int -> float, list -> tuple), or ``None`` if it is not one."""
    if f.type is bool:
        return value if isinstance(value, bool) else None
    if f.type is int:
        return int(value) if _is_int(value) else None
    if f.type is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return float(value) if ok else None
    if f.type is str:
        return value if isinstance(value, str) else None
    if isinstance(value, (tuple, list)) and value and all(_is_int(x) and x > 0 for x in value):
        return tuple(int(x) for x in value)
    return None


def check_value(name: str, value: Any) -> Any:
    """Checks one field's value against its schema row; returns it typed (int -> float, list -> tuple).

    Raises:
        ConfigError: naming the field and the accepted type, range or choices.
    """
    f = field(name)
    typed = _coerce(f, value)
    if typed is None:
        raise ConfigError(f"{f.name} must be {_TYPE_WORDS[f.type]}, got {value!r}")
    if isinstance(typed, float) and not math.isfinite(typed):
        raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
    if f.type is int and not INT32_MIN <= typed <= INT32_MAX:
        bounds = (f"{f.check} and <= {INT32_MAX}" if f.check is not None
                  else f"in [{INT32_MIN}, {INT32_MAX}]")
        raise ConfigError(f"{f.name} must be an int {bounds} (it is stored as int32), "
                          f"got {typed}")
    if f.type is tuple and max(typed) > INT32_MAX:
        raise ConfigError(f"{f.name} must hold ints <= {INT32_MAX} (int32), got {value!r}")
    if f.check is not None and typed not in f.check:
        raise ConfigError(f"{f.name} must be {f.check}, got {value!r}")
    if f.choices is not None and typed not in f.choices:
        raise ConfigError(f"{f.name} must be one of {list(f.choices)}, got {value!r}")
    return typed


def flatten(cfg: ml_collections.ConfigDict | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trpo.target_kl": 0.1, ...}``: every leaf of a nested config (or plain dict) by dotted name."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, (ml_collections.ConfigDict, Mapping)):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# --- cross-field rules: each takes the flat, typed config and returns an error message or None ---
def _active_members_exist(c: dict) -> str | None:
    if c["dynamics.num_active"] > c["dynamics.num_members"]:
        return (f"dynamics.num_active ({c['dynamics.num_active']}) must be <= "
                f"dynamics.num_members ({c['dynamics.num_members']})")
    return None


def _horizon_fits_episode(c: dict) -> str | None:
    if c["imagine.horizon"] > c["episode_length"]:
        return (f"imagine.horizon ({c['imagine.horizon']}) must be <= episode_length "
                f"({c['episode_length']})")
    return None


def _warmup_fits_horizon(c: dict) -> str | None:
    if c["imagine.warmup_horizon"] > c["imagine.horizon"]:
        return (f"imagine.warmup_horizon ({c['imagine.warmup_horizon']}) must be <= "
                f"imagine.horizon ({c['imagine.horizon']}); 0 turns it off")
    return None


def _divides(num: str, den: str) -> Callable[[dict], str | None]:
    def rule(c: dict) -> str | None:
        if c[num] % c[den]:
            return f"{num} ({c[num]}) must be divisible by {den} ({c[den]})"
        return None

    rule.__name__ = f"_{den.replace('.', '_')}_divides_{num.replace('.', '_')}"
    return rule


def _dynamics_batch_fits_split(c: dict) -> str | None:
    # data.buffer.split_sizes's rounding rule and StaticConfig.val_blocks's block count, on the
    # flat dict (config sits below data in the import layers, so it cannot call them)
    blocks = c["deploy.num_envs"] if c["dynamics.val_split"] == "per_env" else 1
    n_train = blocks * int(c["deploy.batch_size"] // blocks * (1 - c["dynamics.val_fraction"]))
    if n_train < c["dynamics.batch_size"]:
        return (f"dynamics.batch_size ({c['dynamics.batch_size']}) is larger than the training "
                f"split of one deployment ({n_train} rows = deploy.batch_size x "
                f"(1 - dynamics.val_fraction))")
    return None


def _ratio_std_needs_constant_sigma(c: dict) -> str | None:
    if c["trpo.ratio_std"] == "policy":
        return None
    if c["imagine.exploration"] != "constant" or not c["imagine.explore_sigma"] > 0:
        return (f"trpo.ratio_std={c['trpo.ratio_std']!r} scores actions under explore_sigma: it "
                f"needs imagine.exploration='constant' (got {c['imagine.exploration']!r}) and "
                f"imagine.explore_sigma > 0 (got {c['imagine.explore_sigma']})")
    return None


CROSS_FIELD_RULES: tuple[Callable[[dict], str | None], ...] = (
    _active_members_exist,
    _horizon_fits_episode,
    _warmup_fits_horizon,
    _divides("imagine.batch_size", "imagine.horizon"),
    _divides("deploy.batch_size", "deploy.num_envs"),
    _divides("trpo.iterations", "trpo.chunk"),
    _dynamics_batch_fits_split,
    _ratio_std_needs_constant_sigma,
)


def validate(cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """Raises :class:`ConfigError` naming the first bad field; returns the flat, typed config.

    Checks, in order: unknown fields (with a "did you mean" suggestion), missing fields, each
    field's type / finiteness / range / choices (from the schema), then the cross-field rules.
    """
    flat = flatten(cfg)
    for name in flat:
        if name not in SCHEMA:
            raise ConfigError(f"unknown config field {name!r}{suggest(name)}")
    missing = [name for name in SCHEMA if name not in flat]
    if missing:
        raise ConfigError(f"config is missing field(s) {missing}")
    typed = {name: check_value(name, flat[name]) for name in SCHEMA}
    for rule in CROSS_FIELD_RULES:
        message = rule(typed)
        if message:
            raise ConfigError(message)
    return typed
