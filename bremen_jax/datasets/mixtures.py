"""The original's behaviour mixtures (BRAC data configs) and D4RL-style mixtures, collected fast.

BREMEN's offline datasets come from the BRAC code (reference §10.2; google-research
``behavior_regularized_offline_rl/brac``: ``configs/dcfg_*.py``, ``policy_loader.py``,
``policies.py``, ``collect_data.py``). Each dataset is a list of components collected one after the
other, with shares given by integer weights:

==================  ==========================================================================
noise               components (weight)
==================  ==========================================================================
``pure``            ``pure`` (1): the behaviour policy's action
``eps1/3``          ``randwalk`` (2), ``pure`` (4), ``eps`` (4): with probability ε = 0.1/0.3
                    the whole action is replaced by a uniform one, else the policy's
``gaussian1/3``     ``randwalk`` (2), ``pure`` (4), ``gaussian`` (4): policy action +
                    N(0, σ²), σ = 0.1/0.3, clipped to ``[-1 + 1e-3, 1 - 1e-3]`` (BRAC's
                    ``clip_eps``)
``random``          ``random`` (1): uniform actions (BREMEN's ``params_preprocessing`` accepts it)
==================  ==========================================================================

**"Random walk"**: BRAC's ``randwalk`` policy type is ``policies.ContinuousRandomPolicy``, which
draws every action i.i.d. uniformly from the action box (``tensor_spec.sample_bounded_spec``); in
spite of its name it has no temporal correlation. It is implemented as exactly that: ε = 1.

**Rounding** (BRAC's ``get_sample_counts``, in exact integer arithmetic): component ``i`` of ``C``
gets ``floor(size * w_i / sum(w))`` rows for ``i < C - 1`` and the last one gets the remainder, so
the counts sum to ``size`` exactly (``eps1`` with 1001 rows: 200 / 400 / 401). Rows are stored in
component order (randwalk, pure, noisy, as BRAC writes them), each component contiguous; the
metadata records every component's row range, so the per-row component id is exact
(:func:`component_ids`). Note: the original's ``offline.py --n_train`` keeps the *first* rows of a
1M file, so a 100K prefix of an ``eps1`` file is pure random-walk data there as here; collect the
smaller size directly instead of truncating.

**Layout.** One call shape serves every component (one compile per policy function, or per
``PolicySource.key``): with ``m``
the smallest non-zero component count, ``E = min(num_envs, max(1, m // episode_length))`` parallel
envs (so each env column holds at least one full episode when ``m`` allows it), ``T = ceil(m / E)``
steps per env, then ``E = ceil(m / T)``. A component of ``n`` rows makes ``ceil(n / (E * T))``
calls of one :func:`~bremen_jax.envs.acting.make_collector` program (``lax.scan`` over ``T``
steps of ``E`` vmapped envs, fresh resets at the start of each call); each call's rows are
flattened env-major (every column contiguous, in time order), calls are concatenated in order and
the first ``n`` rows are kept (fewer than ``E * T`` are dropped per component; none when the
counts are multiples of ``E * T``, e.g. ``eps1`` at 1M with 128 envs drops 64 + 128 + 128). The
last kept row of each column is an episode cut by the collection: it gets ``truncation = 1``
(unless it terminated), so in these datasets every episode ends with ``done`` or ``truncation``
and ``obs[i + 1] == next_obs[i]`` holds at every other row.

**Deviation**: BRAC's "pure" action is a *sample* of its SAC policy (tanh-Gaussian, log-std in
[-5, 0]) and the ε/Gaussian noise is applied to that sample; here the base action is the
behaviour's deterministic ``policy_fn`` (our behaviour policies expose the mean action; a BREMEN
run's policy its Gaussian mean). Components are collected in parallel envs with fresh resets
instead of one env continuing across components.

All noise is one pure wrapper (:func:`make_noisy_policy`) whose ε and σ are traced scalars, so every
component with the same policy function and layout reuses one compiled collector.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Hashable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bremen_jax.envs import registry
from bremen_jax.envs.acting import flatten_env_major, make_collector
from bremen_jax.run.compile import compile_cached
from bremen_jax.types import Params, PolicyFn, PRNGKey, Transition

CLIP_EPS = 1e-3  # BRAC GaussianRandomSoftPolicy(clip_eps=1e-3): clip to [-1 + eps, 1 - eps].
DEFAULT_NUM_ENVS = 128


@dataclasses.dataclass(frozen=True)
class Component:
    """One part of a mixture.

    Attributes:
        name: label stored in the metadata (``randwalk``, ``pure``, ``eps``, ``gaussian``, ...).
        weight: positive integer share (BRAC's third config entry).
        source: index of the :class:`PolicySource` whose policy this component runs.
        epsilon: probability of replacing the whole action by ``U(-1, 1)^act_dim`` (1 = random).
        sigma: std of the Gaussian noise added to the action (then clipped, see module doc).
    """

    name: str
    weight: int
    source: int = 0
    epsilon: float = 0.0
    sigma: float = 0.0

    def __post_init__(self):
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 1:
            raise ValueError(f"Component {self.name!r}: weight must be a positive int, "
                             f"got {self.weight!r}")
        if isinstance(self.source, bool) or not isinstance(self.source, int) or self.source < 0:
            raise ValueError(f"Component {self.name!r}: source must be an int >= 0, "
                             f"got {self.source!r}")
        if not 0.0 <= float(self.epsilon) <= 1.0:
            raise ValueError(f"Component {self.name!r}: epsilon must be in [0, 1], "
                             f"got {self.epsilon!r}")
        if not (math.isfinite(float(self.sigma)) and float(self.sigma) >= 0.0):
            raise ValueError(f"Component {self.name!r}: sigma must be finite and >= 0, "
                             f"got {self.sigma!r}")


def _brac(noise: str, value: float) -> tuple[Component, ...]:
    noisy = (Component("eps", 4, epsilon=value) if noise == "eps"
             else Component("gaussian", 4, sigma=value))
    return (Component("randwalk", 2, epsilon=1.0), Component("pure", 4), noisy)


MIXTURES: dict[str, tuple[Component, ...]] = {
    "pure": (Component("pure", 1),),
    "eps1": _brac("eps", 0.1),
    "eps3": _brac("eps", 0.3),
    "gaussian1": _brac("gaussian", 0.1),
    "gaussian3": _brac("gaussian", 0.3),
    "random": (Component("random", 1, epsilon=1.0),),
}


@dataclasses.dataclass(frozen=True)
class PolicySource:
    """A behaviour policy: ``policy_fn(params, obs[obs_dim], key) -> action[act_dim]``.

    ``key`` (optional): a description of ``policy_fn`` with a stable ``repr`` that determines
    it, e.g. ``("brax_ppo", network_json)``; sources with equal keys share one compiled
    collector, and with ``collect_mixture``'s ``task_key`` on a built-in task the collector is
    stored with the persistent compilation cache, so the next process loads it untraced
    (:class:`bremen_jax.run.compile.Job` ``persist``). ``None``: keyed by the function object,
    compiled once per process.
    """

    name: str
    policy_fn: PolicyFn
    params: Params = None
    mean_return: float | None = None
    key: Hashable | None = None


@flax.struct.dataclass
class NoiseParams:
    """Arguments of a :func:`make_noisy_policy` policy: behaviour params, ``()`` float32 knobs."""

    behavior: Params
    epsilon: jax.Array
    sigma: jax.Array


@dataclasses.dataclass
class MixtureData:
    """Result of :func:`collect_mixture`.

    Attributes:
        transitions: :class:`Transition` of NumPy float32 leaves ``[size, ...]``, component order.
        components: one metadata dict per component (name, rows ``start``/``stop``, counts,
            ε, σ, layout, source, episode statistics).
        episodes: statistics of all complete episodes in the data (``num_episodes``,
            ``return_mean``, ``return_std``, ``length_mean``; ``None`` where undefined).
        timing: ``compile_s``, ``collect_s`` (steady state), ``collected_steps``.
    """

    transitions: Transition
    components: list[dict]
    episodes: dict
    timing: dict


def mixture_components(noise: str) -> tuple[Component, ...]:
    """The components of a named mixture (:data:`MIXTURES`)."""
    if noise not in MIXTURES:
        raise ValueError(f"noise must be one of {', '.join(MIXTURES)}, got {noise!r}")
    return MIXTURES[noise]


def split_counts(size: int, weights: Sequence[int]) -> list[int]:
    """Exact rows per component: ``floor(size * w_i / W)``, the last component gets the rest.

    >>> split_counts(1001, [2, 4, 4])
    [200, 400, 401]
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    weights = list(weights)
    if not weights or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                          for w in weights):
        raise ValueError(f"weights must be a non-empty list of positive ints, got {weights!r}")
    total = sum(weights)
    counts = [size * w // total for w in weights[:-1]]
    return counts + [size - sum(counts)]


def column_layout(count: int, num_envs: int, episode_length: int) -> tuple[int, int]:
    """``(envs, steps)`` that collect ``count`` rows (module doc): ``envs * steps >= count``."""
    for value, field in ((count, "count"), (num_envs, "num_envs"),
                         (episode_length, "episode_length")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be a positive int, got {value!r}")
    envs = min(num_envs, max(1, count // episode_length))
    steps = -(-count // envs)
    return -(-count // steps), steps


def make_noisy_policy(policy_fn: PolicyFn) -> PolicyFn:
    """``noisy(NoiseParams, obs[o], key) -> action[a]``: the BRAC wrappers around ``policy_fn``.

    ``a = policy_fn(params.behavior, obs, key_policy)``; if ``sigma > 0``:
    ``a = clip(a + sigma * N(0, I), -1 + CLIP_EPS, 1 - CLIP_EPS)``; then with probability
    ``epsilon`` the whole action is replaced by ``U(-1, 1)^a``. ``epsilon = sigma = 0`` returns
    ``policy_fn``'s action unchanged (not clipped).
    """
    def noisy(params: NoiseParams, obs: jax.Array, key: PRNGKey) -> jax.Array:
        key_policy, key_gauss, key_uniform, key_coin = jax.random.split(key, 4)
        action = jnp.asarray(policy_fn(params.behavior, obs, key_policy), jnp.float32)
        gauss = action + params.sigma * jax.random.normal(key_gauss, action.shape, jnp.float32)
        gauss = jnp.clip(gauss, -1.0 + CLIP_EPS, 1.0 - CLIP_EPS)
        action = jnp.where(params.sigma > 0, gauss, action)
        uniform = jax.random.uniform(key_uniform, action.shape, jnp.float32, -1.0, 1.0)
        coin = jax.random.uniform(key_coin, (), jnp.float32) < params.epsilon
        return jnp.where(coin, uniform, action)

    return noisy


def _compiled_collector(task, src: PolicySource, envs: int, steps: int, params: NoiseParams,
                        key: PRNGKey, task_key: Hashable | None = None
                        ) -> tuple[Callable, float]:
    """AOT-compiled ``collect(NoiseParams, key)`` through the package's one compile cache
    (:func:`bremen_jax.run.compile.compile_cached`): ``(executable, seconds)``, 0 s when cached.

    It steps the physics (``kind="env"``: the ``auto`` effort compiles it ``light`` on CPU;
    ``bremen collect --fast-compile`` asks for ``fast``). With ``task_key`` and ``src.key``
    given and a built-in task, the key is made of those descriptions and the executable is
    stored on disk (a second ``bremen collect`` loads it without tracing)."""
    collect = make_collector(task, make_noisy_policy(src.policy_fn), envs, steps)
    persist = (task_key is not None and src.key is not None
               and registry.is_builtin(task.name))
    cache_key = (("collect", task_key, src.key, envs, steps) if persist
                 else ("collect", task, src.policy_fn, envs, steps))
    exe = compile_cached(cache_key, collect, params, key, kind="env", persist=persist)
    return exe.fn, 0.0 if exe.cached else exe.seconds


def _episode_summary(ended: np.ndarray, returns: np.ndarray, lengths: np.ndarray) -> dict:
    r = returns[ended]
    return {
        "num_episodes": int(r.size),
        "return_mean": float(r.mean()) if r.size else None,
        "return_std": float(r.std()) if r.size else None,
        "return_min": float(r.min()) if r.size else None,
        "return_max": float(r.max()) if r.size else None,
        "length_mean": float(lengths[ended].mean()) if r.size else None,
    }


def _check_sources(sources: Sequence[PolicySource], components: Sequence[Component]) -> None:
    if not sources:
        raise ValueError("sources must hold at least one PolicySource")
    for i, src in enumerate(sources):
        if not isinstance(src, PolicySource) or not callable(src.policy_fn):
            raise ValueError(f"sources[{i}] must be a PolicySource with a callable policy_fn, "
                             f"got {src!r}")
    if not components or not all(isinstance(c, Component) for c in components):
        raise ValueError("components must be a non-empty sequence of Component")
    for c in components:
        if c.source >= len(sources):
            raise ValueError(f"component {c.name!r} uses source {c.source} but only "
                             f"{len(sources)} sources were given")


def collect_mixture(task, sources: Sequence[PolicySource], components: Sequence[Component],
                    size: int, key: PRNGKey, *, num_envs: int = DEFAULT_NUM_ENVS,
                    task_key: Hashable | None = None) -> MixtureData:
    """Collects ``size`` transitions of a mixture on ``task`` (rounding and layout: module doc).

    Args:
        task: a :class:`bremen_jax.envs.Task` (its ``episode_length`` is the time limit).
        sources: behaviour policies the components refer to by index.
        components: the mixture, e.g. :data:`MIXTURES` ``["eps1"]``.
        size: total rows (exact).
        key: typed PRNG key; component ``i`` uses ``jax.random.split(key, C)[i]`` (reproducible).
        num_envs: most parallel envs per component.
        task_key: a description with a stable ``repr`` that determines ``task`` (e.g. the
            arguments of ``make_task``: ``(name, backend, episode_length)``); with the sources'
            ``key`` s it lets a built-in task's collectors be stored on disk (see
            :class:`PolicySource`). ``None``: compiled once per process.

    Returns:
        :class:`MixtureData`.

    Raises:
        ValueError: bad size/num_envs, empty or inconsistent sources/components.
    """
    _check_sources(sources, components)
    counts = split_counts(size, [c.weight for c in components])
    envs, steps = column_layout(min(n for n in counts if n > 0), num_envs, task.episode_length)
    rows_per_call = envs * steps
    keys = jax.random.split(key, len(components))
    parts, metas, all_stats = [], [], []
    compile_s = collect_s = 0.0
    collected = start = 0
    for i, (comp, count) in enumerate(zip(components, counts)):
        src = sources[comp.source]
        calls = -(-count // rows_per_call)
        meta = {"name": comp.name, "start": start, "stop": start + count, "count": count,
                "weight": comp.weight, "epsilon": comp.epsilon, "sigma": comp.sigma,
                "source": src.name, "source_mean_return": src.mean_return,
                "num_envs": envs, "steps_per_env": steps, "calls": calls}
        start += count
        params = NoiseParams(behavior=src.params, epsilon=jnp.float32(comp.epsilon),
                             sigma=jnp.float32(comp.sigma))
        comp_stats = []
        for j, key_call in enumerate(jax.random.split(keys[i], max(calls, 1))[:calls]):
            collect, seconds = _compiled_collector(task, src, envs, steps, params, key_call,
                                                   task_key)
            compile_s += seconds
            t0 = time.perf_counter()
            tr, stats = jax.block_until_ready(collect(params, key_call))
            collect_s += time.perf_counter() - t0
            collected += rows_per_call
            kept = min(rows_per_call, count - j * rows_per_call)
            tr = _first_rows(flatten_env_major(tr), kept)
            stats = _first_rows(flatten_env_major(stats), kept)
            cut = np.unique(np.minimum(np.arange(1, envs + 1) * steps, kept) - 1)
            truncation = tr.truncation.copy()  # last kept row of each column: a collection cut
            truncation[cut] = np.where(tr.done[cut] > 0.5, 0.0, 1.0)
            parts.append(tr.replace(truncation=truncation))
            comp_stats.append(stats)
        all_stats.extend(comp_stats)
        metas.append({**meta, **_summary_of(comp_stats)})
    transitions = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *parts)
    timing = {"compile_s": compile_s, "collect_s": collect_s, "collected_steps": collected}
    return MixtureData(transitions=transitions, components=metas,
                       episodes=_summary_of(all_stats), timing=timing)


def _first_rows(tree: Any, n: int) -> Any:
    """Each leaf's first ``n`` rows, as NumPy arrays."""
    return jax.tree.map(lambda x: np.asarray(x)[:n], tree)


def _summary_of(stats: Sequence[Any]) -> dict:
    if not stats:
        return _episode_summary(np.zeros(0, bool), np.zeros(0), np.zeros(0))
    return _episode_summary(np.concatenate([s.ended for s in stats]),
                            np.concatenate([s.returns for s in stats]),
                            np.concatenate([s.lengths for s in stats]))


def component_ids(components: Sequence[dict], size: int | None = None) -> np.ndarray:
    """``[size]`` int32 component index per row, from the ``components`` metadata list."""
    stop = max((int(c["stop"]) for c in components), default=0)
    size = stop if size is None else size
    ids = np.full((size,), -1, np.int32)
    for i, c in enumerate(components):
        ids[int(c["start"]):int(c["stop"])] = i
    if stop != size or (ids < 0).any():
        raise ValueError(f"components metadata does not cover rows 0..{size} exactly")
    return ids
