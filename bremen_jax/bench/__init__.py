"""Benchmarks of every phase of a BREMEN deployment (``bremen bench``; issue 7).

* :mod:`~bremen_jax.bench.suite`: the suites (``quick``, ``paper``, ``tiny``), :func:`run_suite`,
  and the ``bremen bench`` command line (``add_arguments``, ``run``; imports no JAX until it runs);
* :mod:`~bremen_jax.bench.phases`: one benchmark per phase (collection, ensemble, bc, trpo,
  evaluation, deployment); the TRPO benchmark times the stages of
  :func:`bremen_jax.algo.trpo.trpo_step` one by one;
* :mod:`~bremen_jax.bench.common`: timing, FLOP counts, the matmul peak, machine info;
* :mod:`~bremen_jax.bench.projection`: the paper run's wall time projected from the phases;
* :mod:`~bremen_jax.bench.targets`: the issue's targets; :mod:`~bremen_jax.bench.report`:
  markdown tables.

The repository's ``benchmarks/`` folder keeps runnable scripts and ``results/``; nothing here
imports it.
"""
