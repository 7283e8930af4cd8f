"""``bremen collect``: offline datasets with the original's mixtures and D4RL-style levels.

``collect_dataset(task, policy, noise, size, out)`` picks the behaviour, builds the mixture
(:mod:`bremen_jax.datasets.mixtures`), collects it in vmapped envs, and writes a dataset file
(:mod:`bremen_jax.data.dataset`) whose metadata records how it was made.

``policy``:

* a behaviour level ``random``, ``medium`` or ``expert`` (Brax-PPO policies shipped with the
  package, :mod:`bremen_jax.datasets.behavior_policies`) with ``noise`` one of ``pure`` (default),
  ``eps1``, ``eps3``, ``gaussian1``, ``gaussian3``, ``random``; ``random`` takes only ``pure`` or
  ``random`` (both 100% uniform actions). ``--policy medium --noise pure`` is D4RL's ``medium``
  level, ``expert``/``pure`` its ``expert`` and ``random`` its ``random``.
* ``medium-replay``: the training snapshots from random up to medium (``load_snapshots``), in
  order, equal shares (rounded as in :func:`~bremen_jax.datasets.mixtures.split_counts`).
  **Deviation**: D4RL's medium-replay is the replay buffer of the SAC run that produced the medium
  policy (every transition that run collected, with its exploration noise); ours replays the
  saved snapshots' deterministic actions, one equal share each.
* ``medium-expert``: 50% ``medium`` + 50% ``expert`` (D4RL concatenates the two datasets).
* a path to a ``bremen train`` run directory: its latest target policy (mean action), any noise.

The two D4RL mixtures take no noise (``None`` or ``pure``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
from typing import Any, Dict, List, Tuple

import jax

from bremen_jax.datasets import behavior_policies, mixtures, scores
from bremen_jax.data.dataset import dataset_info, save_dataset
from bremen_jax.envs import list_tasks, make_task

LEVELS = ("random", "medium", "expert")
D4RL_MIXES = ("medium-replay", "medium-expert")
NOISES = tuple(mixtures.MIXTURES)
DEFAULT_BACKEND = "generalized"


@functools.lru_cache(maxsize=8)
def _make_task(name: str, backend: str, episode_length: int):
    """Tasks are immutable: reusing one lets repeated collections reuse compiled collectors."""
    return make_task(name, backend=backend, episode_length=episode_length)


def _check_int(value: Any, flag: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{flag} must be an int >= {low}, got {value!r}")
    return value


def _source(b: Any, name: str) -> mixtures.PolicySource:
    mean = getattr(b, "mean_return", None)
    mean = None if mean is None or not math.isfinite(float(mean)) else float(mean)
    return mixtures.PolicySource(name=name, policy_fn=b.policy_fn, params=b.params,
                                 mean_return=mean, key=getattr(b, "key", None))


def _sources(behaviors: List[Any], names: List[str]) -> List[mixtures.PolicySource]:
    """Sources; behaviours built from the same network (``meta["network"]``) share the first one's
    ``policy_fn`` object, so their components reuse one compiled collector (the function depends
    on the network only; the weights are ``params``)."""
    shared: Dict[str, Any] = {}
    out = []
    for b, name in zip(behaviors, names):
        src = _source(b, name)
        network = (getattr(b, "meta", None) or {}).get("network")
        if network is not None:
            fn = shared.setdefault(json.dumps(network, sort_keys=True, default=str),
                                   src.policy_fn)
            src = dataclasses.replace(src, policy_fn=fn)
        out.append(src)
    return out


def _behavior_backend(behaviors: List[Any]) -> str | None:
    for b in behaviors:
        meta = getattr(b, "meta", None) or {}
        if meta.get("backend"):
            return str(meta["backend"])
    return None


def _resolve(task: str, policy: str, noise: str | None
             ) -> Tuple[str, List[mixtures.PolicySource], Tuple[mixtures.Component, ...],
                        str | None, Dict[str, Any]]:
    """``(noise, sources, components, backend hint, behaviour description)`` for the flags."""
    if policy in D4RL_MIXES:
        if noise not in (None, "pure"):
            raise ValueError(f"--noise {noise!r} cannot be used with --policy {policy}: the "
                             "D4RL mixtures take no noise (omit --noise or use pure)")
        if policy == "medium-replay":
            snaps = list(behavior_policies.load_snapshots(task, up_to="medium"))
            if not snaps:
                raise ValueError(f"--policy medium-replay: no training snapshots for task "
                                 f"{task!r}")
            names = [str(getattr(b, "level", "") or f"snapshot{i}") for i, b in enumerate(snaps)]
            if len(set(names)) < len(names):
                names = [f"{i}:{n}" for i, n in enumerate(names)]
            behaviors = snaps
        else:
            behaviors = [behavior_policies.load_behavior(task, "medium"),
                         behavior_policies.load_behavior(task, "expert")]
            names = ["medium", "expert"]
        sources = _sources(behaviors, names)
        comps = tuple(mixtures.Component(n, 1, source=i) for i, n in enumerate(names))
        return "pure", sources, comps, _behavior_backend(behaviors), {
            "kind": "d4rl", "level": policy, "sources": names}
    noise = "pure" if noise is None else noise
    if noise not in NOISES:
        raise ValueError(f"--noise must be one of {', '.join(NOISES)}, got {noise!r}")
    if policy in LEVELS:
        if policy == "random" and noise not in ("pure", "random"):
            raise ValueError(f"--noise {noise} needs a policy to perturb; --policy random has "
                             "none (use --noise pure or random, or another --policy)")
        b = behavior_policies.load_behavior(task, policy)
        return noise, [_source(b, policy)], mixtures.mixture_components(noise), \
            _behavior_backend([b]), {"kind": "level", "level": policy}
    run_dir = pathlib.Path(policy)
    if not run_dir.is_dir():
        raise ValueError(f"--policy {policy!r} is neither a level ({', '.join(LEVELS)}), a D4RL "
                         f"mixture ({', '.join(D4RL_MIXES)}) nor an existing `bremen train` run "
                         "directory")
    from bremen_jax.datasets import run_policy  # loads the run package only when needed
    run_task, pol, params, cfg = run_policy.load_run_policy(run_dir)
    if run_task.name != task:
        raise ValueError(f"--policy {policy}: the run trained task {run_task.name!r} but "
                         f"--task is {task!r}")
    source = run_policy.run_policy_source(pol, params)
    return noise, [source], mixtures.mixture_components(noise), \
        str(cfg.get("backend", "") or "") or None, {"kind": "run", "run_dir": str(run_dir)}


def _noise_free_return(components: List[dict]) -> float | None:
    """Episode-weighted mean return of the complete episodes of the noise-free components."""
    pure = [c for c in components if c["epsilon"] == 0 and c["sigma"] == 0
            and c["num_episodes"]]
    n_ep = sum(c["num_episodes"] for c in pure)
    return sum(c["return_mean"] * c["num_episodes"] for c in pure) / n_ep if n_ep else None


def _score(task: str, value: float | None, refs: Tuple[float, float] | None) -> float | None:
    if value is None or refs is None:
        return None
    return scores.normalized_score(task, value, references=refs)


def _check_args(task: str, policy: str, size: int, seed: int, num_envs: int,
                episode_length: int, out: str | pathlib.Path) -> pathlib.Path:
    """Checks :func:`collect_dataset`'s flags (ValueError/FileExistsError); returns ``out``."""
    if task not in list_tasks():
        raise ValueError(f"--task must be one of {', '.join(list_tasks())}, got {task!r}")
    if not isinstance(policy, str) or not policy:
        raise ValueError(f"--policy must be a level, a D4RL mixture or a run directory, got "
                         f"{policy!r}")
    _check_int(size, "--size", 1)
    _check_int(seed, "--seed", 0)
    _check_int(num_envs, "--num-envs", 1)
    _check_int(episode_length, "--episode-length", 1)
    out = pathlib.Path(out)
    if out.exists():
        raise FileExistsError(f"--out {out} already exists; refusing to overwrite it")
    return out


def _behavior_return(policy: str, described: Dict[str, Any], sources, components: List[dict]
                     ) -> Tuple[float | None, str]:
    """``(behavior_return, behavior_return_source)`` as :func:`collect_dataset` documents."""
    behavior_return, source = None, None
    if described["kind"] == "level":
        behavior_return, source = sources[0].mean_return, "behavior policy evaluation"
    elif policy == "medium-expert" and None not in [s.mean_return for s in sources]:
        behavior_return = sum(s.mean_return for s in sources) / len(sources)
        source = "mean of the medium and expert policies' evaluations"
    if behavior_return is None:
        behavior_return = _noise_free_return(components)
        source = "complete noise-free episodes in the dataset"
    return behavior_return, source


def collect_dataset(task: str, policy: str, noise: str | None, size: int,
                    out: str | pathlib.Path, *, seed: int = 0,
                    num_envs: int = mixtures.DEFAULT_NUM_ENVS, backend: str | None = None,
                    episode_length: int = 1000) -> Dict[str, Any]:
    """Collects a dataset and writes it to ``out`` (never overwrites); returns its metadata.

    Args:
        task: task name (``bremen_jax.envs.list_tasks()``).
        policy: ``random``/``medium``/``expert``, ``medium-replay``/``medium-expert``, or a
            ``bremen train`` run directory (module doc).
        noise: ``pure`` (default for ``None``), ``eps1``, ``eps3``, ``gaussian1``,
            ``gaussian3``, ``random``.
        size: number of transitions (exact).
        out: dataset file to create.
        seed: PRNG seed (same seed, same arguments -> same arrays).
        num_envs: most parallel envs per collection call.
        backend: Brax backend; default the behaviour's (or run's) training backend, else the
            task's default from ``behavior_policies.TASK_BACKENDS``, else ``generalized``.
        episode_length: time limit of the real episodes.

    Returns:
        The saved metadata: ``policy``, ``noise``, ``size``, ``seed``, ``backend``,
        ``behavior_return`` (the behaviour policy's measured mean return; for ``medium-expert``
        the mean of the two; for ``medium-replay``, run directories, or a behaviour without a
        measured return: the mean return of the complete episodes of the dataset's noise-free
        components; ``behavior_return_source`` says which), ``dataset_return`` (mean return of
        all complete episodes in the data), ``reference_returns`` ``{random, expert}``
        (``None`` when the task has none pinned), ``behavior_normalized_score``,
        ``dataset_normalized_score``, ``components`` (row ranges and per-component episode
        statistics), ``timing`` (compile, collection, steps/s; plus ``save_s`` and ``total_s``
        in the returned dict only).

    Raises:
        ValueError: an invalid flag (the message names it).
        FileExistsError: ``out`` exists.
    """
    t_start = time.perf_counter()
    out = _check_args(task, policy, size, seed, num_envs, episode_length, out)
    noise, sources, comps, backend_hint, described = _resolve(task, policy, noise)
    backend = (backend or backend_hint
               or behavior_policies.TASK_BACKENDS.get(task) or DEFAULT_BACKEND)
    env_task = _make_task(task, backend, episode_length)
    data = mixtures.collect_mixture(env_task, sources, comps, size, jax.random.key(seed),
                                    num_envs=num_envs,
                                    task_key=(task, backend, episode_length))

    try:
        refs = scores.reference_returns(task)
    except ValueError:
        refs = None
    behavior_return, source = _behavior_return(policy, described, sources, data.components)
    dataset_return = data.episodes["return_mean"]
    meta = {
        "task": task, "policy": policy, "noise": noise, "seed": seed,
        "behavior_policy": {**described, "noise": noise},
        "backend": backend, "episode_length": episode_length, "num_envs": num_envs,
        "behavior_return": behavior_return, "behavior_return_source": source,
        "dataset_return": dataset_return, "dataset_episodes": data.episodes,
        "reference_returns": (None if refs is None
                              else {"random": refs[0], "expert": refs[1]}),
        "behavior_normalized_score": _score(task, behavior_return, refs),
        "dataset_normalized_score": _score(task, dataset_return, refs),
        "components": data.components,
        "random_walk": "BRAC randwalk = i.i.d. uniform actions (ContinuousRandomPolicy)",
        "segment_ends": "truncation=1 also marks episodes cut at the end of a collection column",
    }
    t_save = time.perf_counter()
    meta["timing"] = {
        "compile_s": round(data.timing["compile_s"], 3),
        "collect_s": round(data.timing["collect_s"], 3),
        "collected_steps": data.timing["collected_steps"],
        "steps_per_s": round(data.timing["collected_steps"]
                             / max(data.timing["collect_s"], 1e-9), 1),
        "before_save_s": round(t_save - t_start, 3),
    }
    save_dataset(out, data.transitions, meta)
    info = dataset_info(out)  # what was written, validated
    info["timing"] = {**info["timing"], "save_s": round(time.perf_counter() - t_save, 3),
                      "total_s": round(time.perf_counter() - t_start, 3)}
    return info
