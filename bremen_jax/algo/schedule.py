"""The BREMEN schedule, written once (DESIGN §3, reference §8).

A run is ``K`` deployments; a deployment is a **preamble** then ``C`` **chunks**::

    preamble = collect (online) | insert (offline: the dataset is already in the buffer)
               -> fit_dynamics -> fit_bc (the target policy becomes the clone) -> evaluate (BC init)
    chunk    = improve (trpo.chunk TRPO iterations on imagined rollouts) -> evaluate

Each part is a tuple of :class:`Step` s, pure ``(state, hp) -> (state, metrics)`` functions from
:mod:`bremen_jax.algo.phases`. Everything that runs a schedule takes its order from here:

* :meth:`Schedule.preamble` / :meth:`Schedule.chunk` apply the steps in order (pure; jit them);
* :meth:`Schedule.deployment` = preamble + ``lax.scan`` over chunks; :func:`make_train` scans
  deployments, so a whole run is one XLA program (``jax.vmap`` over ``(keys, hp)`` for sweeps);
* the host driver (:mod:`bremen_jax.run.host`) compiles each :class:`Step` once and calls
  :meth:`Schedule.preamble_steps` / :meth:`Schedule.chunk_steps` in order, logging between calls
  with :func:`collect_metrics` -- it knows the steps' names, not their order or contents.

Offline BREMEN (reference §10.1) is the same schedule with ``K = 1`` and a buffer filled by
:meth:`Schedule.init` from the dataset.

Metrics of one deployment: ``{"preamble": {...}, "improve": {...}, "eval": {...}}`` --
``preamble`` holds collect/, dynamics/ (``[E]`` per member), bc/ and bc_eval/ (the BC-init
return); ``improve`` leaves are ``[C, trpo.chunk]`` and ``eval`` leaves ``[C]`` (stacked chunks).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from bremen_jax.algo.phases import Phases, RunState
from bremen_jax.config import HParams
from bremen_jax.types import Metrics, PRNGKey, Transition

PhaseFn = Callable[[RunState, HParams], tuple[RunState, Metrics]]


class Step(NamedTuple):
    """One compiled unit of the schedule.

    Attributes:
        name: the phase's name (timings, progress, compile cache; equal names = same function).
        fn: ``(state, hp) -> (state, metrics)``, pure.
        group: which metrics dict of the deployment its metrics go to.
        prefix: prepended to its metric names (``"bc_"``: the BC-init evaluation).
        kind: ``"env"`` when its time goes into stepping the physics (collection, evaluation),
            else ``"other"``: a driver that compiles steps one by one may compile the two
            kinds differently (:func:`bremen_jax.run.compile.compile_effort`).
    """

    name: str
    fn: PhaseFn
    group: str
    prefix: str = ""
    kind: str = "other"


def collect_metrics(out: dict[str, Metrics], step: Step, metrics: Metrics) -> dict[str, Metrics]:
    """Adds one step's metrics to the grouped metrics ``out`` (returns ``out``)."""
    out.setdefault(step.group, {}).update({step.prefix + k: v for k, v in metrics.items()})
    return out


def run_steps(steps: tuple[Step, ...], state: RunState, hp: HParams
              ) -> tuple[RunState, dict[str, Metrics]]:
    """Applies ``steps`` in order; metrics grouped by :attr:`Step.group`."""
    out: dict[str, Metrics] = {}
    for step in steps:
        state, m = step.fn(state, hp)
        collect_metrics(out, step, m)
    return state, out


def _next_deployment(state: RunState, hp: HParams) -> tuple[RunState, Metrics]:
    """Offline "collect": the data is already in the buffer; only the counter moves."""
    del hp
    return state.replace(deployment=state.deployment + 1), {}


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """The order of a run's phases (online, or ``offline`` on a dataset inserted by ``init``)."""

    phases: Phases
    offline: bool = False

    @property
    def num_deployments(self) -> int:
        """K (1 offline)."""
        return 1 if self.offline else self.phases.static.deploy.num_deployments

    @property
    def num_chunks(self) -> int:
        """C: TRPO chunks per deployment (``trpo.iterations / trpo.chunk``)."""
        return self.phases.static.num_chunks

    def init(self, key: PRNGKey, data: Transition | None = None) -> RunState:
        """A fresh run state; offline, ``data`` (flat ``[N, ...]``) fills the buffer."""
        state = self.phases.init(key)
        return state if data is None else self.phases.insert(state, data)

    def preamble_steps(self) -> tuple[Step, ...]:
        p = self.phases
        first = (Step("insert", _next_deployment, "preamble") if self.offline
                 else Step("collect", p.collect, "preamble", kind="env"))
        return (first, Step("fit_dynamics", p.fit_dynamics, "preamble"),
                Step("fit_bc", p.fit_bc, "preamble"),
                Step("evaluate", p.evaluate, "preamble", "bc_", kind="env"))

    def chunk_steps(self) -> tuple[Step, ...]:
        p = self.phases
        improve = functools.partial(p.improve, num_iterations=p.static.trpo.chunk,
                                    offline=self.offline)
        return (Step("improve", improve, "improve"),
                Step("evaluate", p.evaluate, "eval", kind="env"))

    def preamble(self, state: RunState, hp: HParams) -> tuple[RunState, Metrics]:
        state, m = run_steps(self.preamble_steps(), state, hp)
        return state, m["preamble"]

    def chunk(self, state: RunState, hp: HParams) -> tuple[RunState, dict[str, Metrics]]:
        return run_steps(self.chunk_steps(), state, hp)

    def deployment(self, state: RunState, hp: HParams) -> tuple[RunState, dict[str, Metrics]]:
        """One deployment (pure): preamble, then the ``C`` chunks as a ``lax.scan``.

        The preamble's closing evaluation (the BC init's) runs as step 0 of a ``C + 1`` scan
        whose step 0 skips its improve (``lax.cond`` on the scan index): the same phases in the
        same order as :meth:`preamble` then ``C`` :meth:`chunk` s, with one copy of the
        evaluation (a Brax episode loop, the largest part of the program) in the graph instead
        of two. Metrics are as if unrolled: the BC-init evaluation in ``preamble``, ``improve``
        and ``eval`` leaves ``[C, ...]``.
        """
        *first, bc_eval = self.preamble_steps()
        improve, evaluate = self.chunk_steps()
        state, pre = run_steps(tuple(first), state, hp)
        improve_shapes = jax.eval_shape(improve.fn, state, hp)[1]

        def skip(s):
            return s, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), improve_shapes)

        def step(s, i):
            s, m_improve = jax.lax.cond(i > 0, lambda s: improve.fn(s, hp), skip, s)
            s, m_eval = evaluate.fn(s, hp)
            return s, (m_improve, m_eval)

        state, (m_improve, m_eval) = jax.lax.scan(step, state,
                                                  jnp.arange(self.num_chunks + 1))
        out = collect_metrics(pre, bc_eval, jax.tree.map(lambda x: x[0], m_eval))
        collect_metrics(out, improve, jax.tree.map(lambda x: x[1:], m_improve))
        collect_metrics(out, evaluate, jax.tree.map(lambda x: x[1:], m_eval))
        return state, out


def make_continue(schedule: Schedule, num_deployments: int
                  ) -> Callable[[RunState, HParams], tuple[RunState, Metrics]]:
    """``run(state, hp)``: ``num_deployments`` deployments as one ``lax.scan``; metrics have
    leaves ``[K, ...]``."""

    def run(state: RunState, hp: HParams) -> tuple[RunState, Metrics]:
        return jax.lax.scan(lambda s, _: schedule.deployment(s, hp), state, None,
                            length=num_deployments)

    return run


def make_train(schedule: Schedule, num_deployments: int | None = None
               ) -> Callable[[PRNGKey, HParams], tuple[RunState, Metrics]]:
    """The compiled driver's program: ``train(key, hp) -> (final_state, metrics)`` (online).

    Pure and ``vmap``-able over ``(keys, hp)``; trace it inside
    :func:`bremen_jax.config.precision_context`. Metric leaves are ``[K, ...]``.
    """
    run = make_continue(schedule, num_deployments or schedule.num_deployments)

    def train(key: PRNGKey, hp: HParams) -> tuple[RunState, Metrics]:
        return run(schedule.init(key), hp)

    return train
