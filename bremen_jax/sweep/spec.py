"""Sweep files and specs: loading, validation, and points -> stacked HParams (``[R]`` runs axis).

See :mod:`bremen_jax.sweep.program` for the format. Sweep files are found by name in
:mod:`bremen_jax.configs.sweeps` (imported as package modules) or by ``.py`` path.
:func:`parse_sweep` validates a ``get_sweep()`` dict against a config; :func:`build_plans` turns
it into one :class:`OuterPlan` per outer value, whose points share one
:class:`~bremen_jax.config.StaticConfig` and whose HParams are stacked along a leading runs axis
(``run = point * num_seeds + seed_index``).
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import os
import pathlib
import pkgutil
import types
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from bremen_jax import config as config_lib
from bremen_jax.config.setter import user_code

SWEEP_PACKAGE = "bremen_jax.configs.sweeps"   # shipped sweep files, loaded by name
SPEC_KEYS = ("seeds", "grid", "points", "random", "outer", "description")
POINT_KINDS = ("grid", "points", "random")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


class SweepError(config_lib.ConfigError):
    """A bad sweep file or spec; the message names the key or field and what was expected."""


# ------------------------------------------------------------------------ sweep files and specs
@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep. ``points``/``outer`` hold at least one dict each (``{}`` = as is)."""

    seeds: tuple[int, ...]
    kind: str                               # grid | points | random | seeds
    fields: tuple[str, ...]                 # HParam fields set per point
    points: tuple[dict, ...]
    outer_fields: tuple[str, ...]
    outer: tuple[dict, ...]
    raw: dict                               # the spec as given (JSON-able)


def _python(v: Any) -> Any:
    """NumPy scalars -> Python; lists and arrays -> tuples (config values are tuples)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, list):
        return tuple(_python(x) for x in v)
    return v


def override(cfg: ml_collections.ConfigDict, values: Mapping[str, Any]
             ) -> ml_collections.ConfigDict:
    """``cfg`` with ``field -> value`` set (:func:`bremen_jax.config.override`, checked by the
    schema); NumPy values become Python ones first."""
    return config_lib.override(cfg, {k: _python(v) for k, v in values.items()})


def jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return _python(x)


def _seeds(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, bool):
        raise SweepError(f"sweep 'seeds' must be a positive int or a list of ints, got {raw!r}")
    if isinstance(raw, (int, np.integer)):
        if raw <= 0:
            raise SweepError(f"sweep 'seeds' must be > 0 (the number of seeds), got {raw}")
        return tuple(range(int(raw)))
    if (not isinstance(raw, (list, tuple)) or not raw
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in raw)):
        raise SweepError(f"sweep 'seeds' must be a positive int or a non-empty list of ints, "
                         f"got {raw!r}")
    if not all(0 <= s < 2 ** 31 for s in raw) or len(set(raw)) != len(raw):
        raise SweepError(f"sweep 'seeds' must be distinct ints in [0, 2**31), got {list(raw)}")
    return tuple(int(s) for s in raw)


def _values_list(field: str, values: Any, where: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise SweepError(f"sweep '{where}': {field} must map to a non-empty list of values, "
                         f"got {values!r}")
    return [_python(v) for v in values]


def _sample_random(raw: Any) -> list[dict]:
    """Deterministic random-search points (NumPy ``default_rng(seed)``, point-major draws)."""
    if not isinstance(raw, Mapping):
        raise SweepError(f"sweep 'random' must be a dict with num_points, seed, space; got {raw!r}")
    extra = sorted(set(raw) - {"num_points", "seed", "space"})
    if extra:
        raise SweepError(f"sweep 'random': unknown key(s) {extra}; expected num_points, seed, "
                         f"space")
    n, seed, space = raw.get("num_points"), raw.get("seed", 0), raw.get("space")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise SweepError(f"sweep 'random': num_points must be a positive int, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SweepError(f"sweep 'random': seed must be an int >= 0, got {seed!r}")
    if not isinstance(space, Mapping) or not space:
        raise SweepError(f"sweep 'random': space must be a non-empty dict field -> "
                         f"(distribution, ...), got {space!r}")
    for field, d in space.items():
        ok = isinstance(d, (list, tuple)) and d and d[0] in DISTRIBUTIONS
        if ok and d[0] == "choice":
            ok = len(d) == 2 and isinstance(d[1], (list, tuple)) and len(d[1]) > 0
        elif ok:
            ok = (len(d) == 3 and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                      for b in d[1:]) and d[1] <= d[2]
                  and (d[0] != "log_uniform" or d[1] > 0)
                  and (d[0] != "int_uniform" or all(isinstance(b, int) for b in d[1:])))
        if not ok:
            raise SweepError(
                f"sweep 'random': {field} must be ('uniform', lo, hi), ('log_uniform', lo, hi) "
                f"with 0 < lo <= hi, ('int_uniform', lo, hi) with ints (inclusive) or "
                f"('choice', [values]); got {d!r}")
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n):
        p = {}
        for field, (dist, *args) in space.items():
            if dist == "uniform":
                p[field] = float(rng.uniform(args[0], args[1]))
            elif dist == "log_uniform":
                p[field] = float(np.exp(rng.uniform(np.log(args[0]), np.log(args[1]))))
            elif dist == "int_uniform":
                p[field] = int(rng.integers(args[0], args[1] + 1))
            else:
                p[field] = _python(args[0][int(rng.integers(len(args[0])))])
        points.append(p)
    return points


def _check_fields(cfg, fields: Sequence[str], where: str) -> None:
    known = config_lib.flatten(cfg)
    for f in fields:
        if f == "seed":
            raise SweepError(f"sweep '{where}': 'seed' is swept with the top-level 'seeds' key")
        if f not in known:
            raise SweepError(f"sweep '{where}': unknown config field {f!r}; known fields: "
                             f"{sorted(known)}")


def parse_sweep(cfg: ml_collections.ConfigDict, raw: Mapping[str, Any]) -> SweepSpec:
    """Validates ``get_sweep()``'s dict against ``cfg``; raises :class:`SweepError`.

    Checks: known top-level keys; ``seeds`` > 0 (or distinct ints); at most one of grid /
    points / random, non-empty; every field known; grid/points/random fields must be HParams
    (a field that changes the StaticConfig must go in ``outer``); every point valid.
    """
    if not isinstance(raw, Mapping):
        raise SweepError(f"get_sweep() must return a dict, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise SweepError(f"unknown sweep key(s) {unknown}; expected some of {list(SPEC_KEYS)}")
    seeds = _seeds(raw.get("seeds", 1))
    kinds = [k for k in POINT_KINDS if k in raw]
    if len(kinds) > 1:
        raise SweepError(f"sweep has {kinds}: give at most one of {list(POINT_KINDS)}")
    kind = kinds[0] if kinds else "seeds"
    if kind == "grid":
        grid = raw["grid"]
        if not isinstance(grid, Mapping) or not grid:
            raise SweepError(f"sweep 'grid' must be a non-empty dict field -> [values], "
                             f"got {grid!r}")
        lists = {f: _values_list(f, v, "grid") for f, v in grid.items()}
        points = [dict(zip(lists, combo)) for combo in itertools.product(*lists.values())]
    elif kind == "points":
        pts = raw["points"]
        if (not isinstance(pts, (list, tuple)) or not pts
                or not all(isinstance(p, Mapping) and p for p in pts)):
            raise SweepError(f"sweep 'points' must be a non-empty list of non-empty dicts "
                             f"field -> value, got {pts!r}")
        points = [{f: _python(v) for f, v in p.items()} for p in pts]
    elif kind == "random":
        points = _sample_random(raw["random"])
    else:
        points = [{}]
    fields = tuple(dict.fromkeys(f for p in points for f in p))
    _check_fields(cfg, fields, kind)
    outer_raw = raw.get("outer", {})
    if not isinstance(outer_raw, Mapping):
        raise SweepError(f"sweep 'outer' must be a dict field -> [values], got {outer_raw!r}")
    outer_lists = {f: _values_list(f, v, "outer") for f, v in outer_raw.items()}
    _check_fields(cfg, list(outer_lists), "outer")
    both = sorted(set(outer_lists) & set(fields))
    if both:
        raise SweepError(f"field(s) {both} are in both 'outer' and '{kind}'; keep each in one")
    outer = [dict(zip(outer_lists, c)) for c in itertools.product(*outer_lists.values())] or [{}]
    spec = SweepSpec(seeds=seeds, kind=kind, fields=fields, points=tuple(points),
                     outer_fields=tuple(outer_lists), outer=tuple(outer), raw=jsonable(raw))
    build_plans(cfg, spec)  # validates every (outer, point) config
    return spec


def known_sweeps() -> list[str]:
    """Names of the shipped sweep files (modules of :mod:`bremen_jax.configs.sweeps`)."""
    package = importlib.import_module(SWEEP_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                  if not m.name.startswith("_"))


def load_sweep_module(sweep: str | os.PathLike) -> types.ModuleType:
    """A sweep file's module: ``sweep`` is a name in :mod:`bremen_jax.configs.sweeps` (imported)
    or a path to a ``.py`` file (executed). Raises :class:`SweepError` when neither exists."""
    path = pathlib.Path(sweep)
    if not path.suffix and str(sweep) in known_sweeps():
        return importlib.import_module(f"{SWEEP_PACKAGE}.{sweep}")
    if not path.suffix or not path.is_file():
        raise SweepError(f"sweep file {str(sweep)!r} not found; expected a .py file with "
                         f"get_sweep() or one of {known_sweeps()}")
    with user_code(f"sweep file {path}", SweepError):
        return config_lib.exec_file(path, "bremen_sweep_")


def _from_module(module: types.ModuleType) -> tuple[Any, Any]:
    """``(get_config() or the base config, get_sweep())`` of a sweep file; anything the file
    raises, or a result of the wrong type, is one :class:`SweepError` naming the file."""
    name = getattr(module, "__file__", None) or module.__name__
    if not callable(getattr(module, "get_sweep", None)):
        raise SweepError(f"sweep file {name} defines no get_sweep(); expected get_sweep() "
                         f"returning the sweep dict and get_config() or base = '<config>'")
    if callable(getattr(module, "get_config", None)):
        with user_code(f"sweep file {name}: get_config()", SweepError):
            cfg = module.get_config()
    elif isinstance(getattr(module, "base", None), (str, pathlib.Path)):
        cfg = config_lib.load_config(module.base)
    else:
        raise SweepError(f"sweep file {name} defines neither get_config() nor base = "
                         f"'<config name or path>'")
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise SweepError(f"sweep file {name}: get_config() returned a {type(cfg).__name__}, "
                         f"expected an ml_collections.ConfigDict")
    with user_code(f"sweep file {name}: get_sweep()", SweepError):
        raw = module.get_sweep()
    if not isinstance(raw, Mapping):
        raise SweepError(f"sweep file {name}: get_sweep() returned a {type(raw).__name__}, "
                         f"expected a dict")
    return cfg, raw


def load_sweep(sweep: Any, overrides: Sequence[str] = ()
               ) -> tuple[ml_collections.ConfigDict, SweepSpec]:
    """Loads a sweep: a file path, a name in :mod:`bremen_jax.configs.sweeps`, a module, or a
    ``(ConfigDict, spec dict)`` pair. ``overrides`` (``"a.b=v"``) apply to the base config and
    may not name a swept field. Returns ``(cfg, spec)``."""
    if isinstance(sweep, tuple) and len(sweep) == 2:
        cfg, raw = sweep
    else:
        cfg, raw = _from_module(sweep if isinstance(sweep, types.ModuleType)
                                else load_sweep_module(sweep))
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise SweepError(f"the sweep's config must be an ml_collections.ConfigDict, got "
                         f"{type(cfg).__name__}")
    if overrides:
        cfg = config_lib.apply_overrides(cfg, overrides)
    config_lib.validate(cfg)
    spec = parse_sweep(cfg, raw)
    clash = sorted({o.split("=", 1)[0].strip().removeprefix("config.") for o in overrides}
                   & set(spec.fields + spec.outer_fields))
    if clash:
        raise SweepError(f"override(s) of swept field(s) {clash}: the sweep sets them per point; "
                         f"remove the override or the field from the sweep")
    return cfg, spec


# ------------------------------------------------------------------------ plans: points -> HParams
@dataclasses.dataclass
class OuterPlan:
    """One compiled program: the runs of one outer value (``R`` = points x seeds, point-major)."""

    index: int
    values: dict                             # outer field -> value
    cfg: ml_collections.ConfigDict           # base config with the outer values
    static: config_lib.StaticConfig
    point_cfgs: list                         # one config per point
    hp: config_lib.HParams                   # NumPy leaves [R]
    seeds: np.ndarray                        # [R] int32
    point: np.ndarray                        # [R] int32 point index of each run

    @property
    def num_runs(self) -> int:
        return int(self.seeds.shape[0])


def _override_split(cfg: ml_collections.ConfigDict, values: Mapping[str, Any], where: str
                    ) -> tuple[ml_collections.ConfigDict, config_lib.StaticConfig,
                               config_lib.HParams]:
    """``override`` then ``split``; a :class:`~bremen_jax.config.ConfigError` becomes a
    :class:`SweepError` that names ``where``."""
    try:
        cfg_v = override(cfg, values)
        return (cfg_v, *config_lib.split(cfg_v))
    except config_lib.ConfigError as e:
        raise SweepError(f"{where}: {e}") from None


def build_plans(cfg: ml_collections.ConfigDict, spec: SweepSpec) -> list[OuterPlan]:
    """Per outer value: every point's config, split, checked to share one StaticConfig, and the
    HParams stacked along ``[R]`` (``run = point * num_seeds + seed_index``)."""
    plans = []
    S = len(spec.seeds)
    for i, outer in enumerate(spec.outer):
        cfg_o, static, _ = _override_split(cfg, outer, f"sweep 'outer' value {outer}")
        cfgs, hps = [], []
        for j, point in enumerate(spec.points):
            cfg_p, static_p, hp_p = _override_split(cfg_o, point, f"sweep point {j} {point}")
            if static_p != static:
                changed = [f for f in point if config_lib.is_static(f)]
                raise SweepError(
                    f"sweep '{spec.kind}' field(s) {changed or list(point)} set a shape, trip "
                    f"count or code path (kind 'static' in bremen_jax.config's schema) and cannot "
                    f"vary inside one compiled program: move them to 'outer' (one compile per "
                    f"value)")
            cfgs.append(cfg_p)
            hps.append(jax.tree.map(np.asarray, hp_p))
        stacked = jax.tree.map(lambda *xs: np.repeat(np.stack(xs), S, axis=0), *hps)
        plans.append(OuterPlan(
            index=i, values=dict(outer), cfg=cfg_o, static=static, point_cfgs=cfgs, hp=stacked,
            seeds=np.tile(np.asarray(spec.seeds, np.int32), len(spec.points)),
            point=np.repeat(np.arange(len(spec.points), dtype=np.int32), S)))
    return plans
