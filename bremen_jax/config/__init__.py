"""BREMEN configuration: one declarative schema, and everything derived from it.

A config is an ``ml_collections.ConfigDict`` with the sections of ``bremen_jax/configs/default.py``.
:mod:`~bremen_jax.config.schema` lists every field (kind, type, default, constraint, doc);
:func:`split` turns a config into ``(StaticConfig, HParams)`` nested like the file;
:func:`override` / :func:`parse_value` / :func:`apply_overrides` are the one typed setter.

This package is a leaf: it imports nothing of ``bremen_jax`` but ``types``.
"""

from bremen_jax.config.checks import CROSS_FIELD_RULES, check_value, flatten, validate
from bremen_jax.config.precision import precision_context
from bremen_jax.config.schema import (BACKENDS, FIELDS, HOST, KINDS, PRECISIONS, SCHEMA, SECTIONS,
                                      STATIC, TRACED, ConfigError, Field, default_config, field,
                                      fields_of, is_static, kind_of)
from bremen_jax.config.sections import (BCConfig, BCHParams, DeployConfig, DynamicsConfig,
                                        DynamicsHParams, EvalConfig, HParams, ImagineConfig,
                                        ImagineHParams, PolicyNetConfig, StaticConfig, TRPOConfig,
                                        TRPOHParams, ValueHParams, split)
from bremen_jax.config.setter import (apply_overrides, exec_file, known_configs, load_config,
                                      override, parse_value)

__all__ = [
    "BACKENDS", "BCConfig", "BCHParams", "CROSS_FIELD_RULES", "ConfigError", "DeployConfig",
    "DynamicsConfig", "DynamicsHParams", "EvalConfig", "FIELDS", "Field", "HOST", "HParams",
    "ImagineConfig", "ImagineHParams", "KINDS", "PRECISIONS", "PolicyNetConfig", "SCHEMA",
    "SECTIONS", "STATIC", "StaticConfig", "TRACED", "TRPOConfig", "TRPOHParams", "ValueHParams",
    "apply_overrides", "check_value", "default_config", "exec_file", "field", "fields_of",
    "flatten", "is_static", "kind_of", "known_configs", "load_config", "override", "parse_value",
    "precision_context", "split", "validate",
]
