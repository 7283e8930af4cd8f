"""Benchmark scripts and results of a checkout (not installed): ``python -m benchmarks.run``,
``benchmarks.report``, ``benchmarks.dynamics_fit``, ``benchmarks.trpo_iteration``,
``benchmarks.sweep_scaling``. The library part is :mod:`bremen_jax.bench` (``bremen bench``).
"""
