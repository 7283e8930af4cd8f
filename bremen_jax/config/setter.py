"""Loading config files and the one typed setter used by the CLI, sweeps and resume.

* :func:`load_config` loads ``bremen_jax/configs/<name>.py`` by module name, or a ``.py`` path
  (:func:`exec_file`, which sweep files use too).
* :func:`override` sets Python values (``{"trpo.target_kl": 0.05}``), checked by the schema.
* :func:`parse_value` parses one command-line string by the field's schema type, once.
* :func:`apply_overrides` is the command-line form (``["trpo.target_kl=0.05", ...]``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import pathlib
import pkgutil
import types
from typing import Any, Iterator, Mapping, Sequence

import ml_collections

from bremen_jax.config.checks import check_value
from bremen_jax.config.schema import ConfigError, field

CONFIGS_PACKAGE = "bremen_jax.configs"
_TRUE, _FALSE = ("true", "True"), ("false", "False")


def known_configs() -> list[str]:
    """Names :func:`load_config` accepts: the modules of :mod:`bremen_jax.configs`."""
    package = importlib.import_module(CONFIGS_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                  if not m.ispkg and not m.name.startswith("_"))


def _import_named(name: str):
    if name not in known_configs():
        raise ConfigError(f"config {name!r} not found; expected one of {known_configs()} or a path "
                          f"to a .py file defining get_config()")
    return importlib.import_module(f"{CONFIGS_PACKAGE}.{name}")


def exec_file(path: pathlib.Path, prefix: str) -> types.ModuleType:
    """Executes the ``.py`` file ``path`` as a new module named ``<prefix><stem>`` (not put in
    ``sys.modules``) and returns it; errors inside the file propagate (see :func:`user_code`)."""
    spec = importlib.util.spec_from_file_location(f"{prefix}{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def user_code(where: str, error: type[ConfigError] = ConfigError) -> Iterator[None]:
    """Runs the body (code of a user's config or sweep file: executing it, ``get_config()``,
    ``get_sweep()``) and reports whatever it raises -- a ``SyntaxError``, a missing import, an
    exception, even ``sys.exit()`` -- as one ``error`` line ``"<where>: <Type>: <message>"``.
    A :class:`ConfigError` (already a one-line message) passes through; Ctrl-C is not caught."""
    try:
        yield
    except ConfigError:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 -- anything a user's file can raise
        message = " ".join(str(e).split()) or "(no message)"
        raise error(f"{where}: {type(e).__name__}: {message}") from None


def _import_path(path: pathlib.Path):
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; expected a path to a .py file "
                          f"defining get_config() or one of {known_configs()}")
    return exec_file(path, "bremen_config_")


def load_config(name_or_path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """``get_config()`` of a shipped config (by name, e.g. ``"quick"``) or of a ``.py`` file.

    Raises:
        ConfigError: in one line for an unknown name or missing file, a file without
            ``get_config()``, a ``get_config()`` that raises or returns no ``ConfigDict``, and a
            ``SyntaxError`` / ``ImportError`` inside the file.
    """
    text = str(name_or_path)
    is_path = isinstance(name_or_path, pathlib.Path) or text.endswith(".py") or "/" in text
    where = text if is_path else f"{CONFIGS_PACKAGE.replace('.', '/')}/{text}.py"
    with user_code(f"config file {where}"):
        module = _import_path(pathlib.Path(text)) if is_path else _import_named(text)
    where = getattr(module, "__file__", None) or text
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {where} defines no get_config(); expected a function "
                          f"get_config() returning an ml_collections.ConfigDict")
    with user_code(f"config file {where}: get_config()"):
        cfg = module.get_config()
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"config file {where}: get_config() returned a {type(cfg).__name__}, "
                          f"expected an ml_collections.ConfigDict")
    return cfg


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _parse_number(name: str, text: str, kind: type) -> Any:
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        word = "an int" if kind is int else "a number"
        raise ConfigError(f"{name} must be {word}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {text!r}")
    return value


def _parse_tuple(name: str, text: str) -> tuple[int, ...]:
    inner = text.strip()
    if inner[:1] in "([" and inner[-1:] in ")]":
        inner = inner[1:-1]
    try:
        return tuple(int(x) for x in inner.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a non-empty tuple of positive ints like (64, 64), "
                          f"got {text!r}") from None


def parse_value(name: str, text: str) -> Any:
    """Parses a command-line string by ``name``'s schema type, then checks it.

    bool: ``true``/``false`` (any case of the first letter); int: ``12``; float: ``0.05``, ``1e-3``
    (``inf``/``nan`` rejected); str: ``mjx`` or ``'mjx'``; tuple: ``(64, 64)``, ``[64,64]``, ``64,64``.
    """
    f = field(name)
    text = text.strip()
    if f.type is bool:
        if text not in _TRUE + _FALSE:
            raise ConfigError(f"{f.name} expects true/false (True/False), got {text!r}")
        value: Any = text in _TRUE
    elif f.type in (int, float):
        value = _parse_number(f.name, text, f.type)
    elif f.type is str:
        value = _unquote(text)
    else:
        value = _parse_tuple(f.name, text)
    return check_value(f.name, value)


def _set(cfg: ml_collections.ConfigDict, name: str, value: Any) -> None:
    *path, leaf = name.split(".")
    node = cfg
    for part in path:
        if part not in node:  # e.g. a section that an older run's stored config lacks
            node[part] = ml_collections.ConfigDict()
        node = node[part]
    node[leaf] = value


def override(cfg: ml_collections.ConfigDict,
             values: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of ``cfg`` with ``{"section.field": python_value}`` set, each checked by the schema.

    Raises:
        ConfigError: unknown field (with a suggestion) or a value the field does not accept.
    """
    out = ml_collections.ConfigDict(cfg.to_dict())
    for name, value in values.items():
        f = field(name)
        _set(out, f.name, check_value(f.name, value))
    return out


def apply_overrides(cfg: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """A copy of ``cfg`` with ``"section.field=value"`` strings applied (:func:`parse_value`)."""
    values = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like field.sub=value")
        name, text = item.split("=", 1)
        name = field(name.strip()).name
        values[name] = parse_value(name, text)
    return override(cfg, values)
