"""The matmul-precision context every driver traces under (config field ``precision``)."""

from __future__ import annotations

import contextlib

import jax


def precision_context(precision: str):
    """``jax.default_matmul_precision(precision)`` for tracing; nothing for ``"default"``."""
    if precision == "default":
        return contextlib.nullcontext()
    return jax.default_matmul_precision(precision)
