"""Training a task's behaviour policies with :func:`brax.training.agents.ppo.train.train` (issue 6).

:func:`train_behavior` runs Brax's own PPO on the task's :class:`~bremen_jax.envs.TaskEnv` and
writes the artefacts :mod:`bremen_jax.datasets.behavior_policies` loads (layout in its docstring).
It is a sequence of named steps, each importable:

1. :func:`ppo_setup` checks the arguments and resolves the PPO settings and the networks;
2. :func:`run_ppo` trains, keeping ``num_snapshots`` policies (:class:`Trained`);
3. :func:`measure` evaluates every snapshot and the uniform policy with our evaluator and picks the
   ``medium`` snapshot with :func:`choose_medium` (:class:`Measured`);
4. :func:`save_policies`, :func:`make_manifest`, :func:`update_references` write the files;
5. :func:`make_report` is the one-line summary returned and logged.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import inspect
import json
import pathlib
import time
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from brax.training.agents.ppo import networks as ppo_networks

from bremen_jax.datasets import compat
from bremen_jax.datasets.behavior_policies import (
    ACTIVATIONS, MANIFEST, REFERENCES, TASK_BACKENDS, PolicyNetwork, PPOPolicyParams,
    artifact_dir, check_task_name, make_ppo_policy_fn, read_references, save_params)
from bremen_jax.envs import Task, make_task, task_specs
from bremen_jax.envs.acting import make_evaluator, uniform_random_policy
from bremen_jax.types import PolicyFn, PRNGKey

# Per task (from its TaskSpec, bremen_jax/envs/tasks/<task>.py): the task's PPO settings (Brax's
# published ones, see envs/tasks/_common.py), on top of these env counts scaled down from 2048-4096
# envs for a CPU. The backend is behavior_policies.TASK_BACKENDS (the one the shipped configs train
# BREMEN on, so the datasets come from the same physics).
PPO_COMMON = dict(normalize_observations=True, action_repeat=1, num_envs=64, batch_size=64,
                  num_minibatches=16)
PPO_SETTINGS = {name: dict(spec.behavior_ppo) for name, spec in task_specs().items()}
NETWORK_KWARGS = ("policy_hidden_layer_sizes", "value_hidden_layer_sizes", "activation")
# ppo.train arguments set by train_behavior itself.
_RESERVED = ("environment", "num_timesteps", "episode_length", "num_evals", "run_evals", "seed",
             "network_factory", "progress_fn", "policy_params_fn", "log_training_metrics")
MEDIUM_FRACTION = (1.0 / 3.0, 0.5)
_EVAL_SEED_OFFSET = 1_000_003  # the evaluation key is jax.random.key(seed + this)


@dataclasses.dataclass(frozen=True)
class Setup:
    """What one training run is made of (resolved by :func:`ppo_setup`).

    Attributes:
        task: task name; backend: its physics backend; task_obj: the task (episode length 1000).
        settings: ``ppo.train`` keyword arguments (common + task + user overrides).
        network: the policy network; value_hidden: the value MLP's hidden sizes.
        factory: ``network_factory`` for ``ppo.train``.
        seed, num_timesteps, num_snapshots, eval_episodes: as given to :func:`train_behavior`.
    """

    task: str
    backend: str
    task_obj: Task
    settings: dict
    network: PolicyNetwork
    value_hidden: tuple[int, ...]
    factory: Callable
    seed: int
    num_timesteps: int
    num_snapshots: int
    eval_episodes: int


@dataclasses.dataclass(frozen=True)
class Trained:
    """PPO's output: ``snapshots`` ``[(env step, wall s since start, PPOPolicyParams)]``,
    ``curve`` ``[[step, training episode return]]`` and the training wall time."""

    snapshots: list
    curve: list
    train_time: float

    @property
    def steps(self) -> list[int]:
        return [s for s, _, _ in self.snapshots]

    @property
    def times(self) -> list[float]:
        return [t for _, t, _ in self.snapshots]


@dataclasses.dataclass(frozen=True)
class Measured:
    """Evaluation: ``rets`` per snapshot and ``rand`` for the uniform policy (each
    ``{"mean", "std", "length"}``), the evaluation wall time and the chosen medium index."""

    rets: list
    rand: dict
    eval_time: float
    medium: int

    @property
    def r_random(self) -> float:
        return self.rand["mean"]

    @property
    def r_expert(self) -> float:
        return self.rets[-1]["mean"]


def evaluate_policies(task: Task, policy_fn: PolicyFn, params_list: Sequence[Any],
                      num_episodes: int, key: PRNGKey) -> list[dict[str, float]]:
    """Mean/std task return of each params (one compile; the same key for all, so the same starts).

    Episodes run to the task's termination or ``task.episode_length`` steps
    (:func:`~bremen_jax.envs.acting.make_evaluator`). Returns ``[{"mean", "std", "length"}]``.
    """
    evaluate = jax.jit(make_evaluator(task, policy_fn, num_episodes))
    out = []
    for params in params_list:
        # On the host first: Brax PPO's arrays carry its device mesh's sharding, which differs
        # between its snapshots and would recompile the evaluator for each.
        m = jax.device_get(evaluate(jax.device_get(params), key))
        out.append({"mean": float(m["return_mean"]), "std": float(m["return_std"]),
                    "length": float(m["length_mean"])})
    return out


def choose_medium(returns: Sequence[float], r_random: float, r_expert: float,
                  fraction: tuple[float, float] = MEDIUM_FRACTION) -> int:
    """Index of the snapshot (the last one, the expert, excluded) whose normalised return
    ``(R - R_random) / (R_expert - R_random)`` is closest to the middle of ``fraction``.

    D4RL's "medium" stops at about a third of the expert (anchors §5); normalising by the random
    return keeps the rule meaningful for tasks with negative returns (halfcheetah). Ties: earliest.
    """
    if len(returns) < 2:
        raise ValueError(f"need at least 2 snapshots to choose a medium one, got {len(returns)}")
    span = r_expert - r_random
    target = 0.5 * (fraction[0] + fraction[1])
    scores = [(r - r_random) / span if span > 0 else 0.0 for r in returns[:-1]]
    return int(np.argmin([abs(s - target) for s in scores]))


def _check_counts(task: str, num_timesteps, num_snapshots, eval_episodes) -> None:
    check_task_name(task)
    for field, value in (("num_timesteps", num_timesteps), ("num_snapshots", num_snapshots),
                         ("eval_episodes", eval_episodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{field} must be a positive int, got {value!r}")
    if num_snapshots < 3:
        raise ValueError(
            f"num_snapshots must be >= 3 (initial, medium, expert), got {num_snapshots}")


def ppo_setup(task: str, *, num_timesteps: int, seed: int, backend: str | None,
              num_snapshots: int, eval_episodes: int, ppo_kwargs: dict) -> Setup:
    """Checks the arguments of :func:`train_behavior` and resolves settings and networks.

    Raises:
        ValueError: unknown task, a count that is not a positive int, fewer than 3 snapshots, or
            a ``ppo_kwargs`` key that ``ppo.train`` does not take or :func:`train_behavior` sets.
    """
    _check_counts(task, num_timesteps, num_snapshots, eval_episodes)
    from brax.training.agents.ppo import train as ppo_train  # heavy import, only for training

    backend = TASK_BACKENDS.get(task, "generalized") if backend is None else backend
    task_obj = make_task(task, backend=backend, episode_length=1000)
    ppo_kwargs = dict(ppo_kwargs)
    net_kw = {k: ppo_kwargs.pop(k) for k in list(ppo_kwargs) if k in NETWORK_KWARGS}
    valid = set(inspect.signature(ppo_train.train).parameters) - set(_RESERVED)
    bad = sorted(set(ppo_kwargs) - valid)
    if bad:
        raise ValueError(f"unknown or reserved ppo_kwargs {bad}; valid: {sorted(valid)} and "
                         f"{list(NETWORK_KWARGS)}")
    settings = dict(PPO_COMMON, **PPO_SETTINGS.get(task, PPO_SETTINGS["halfcheetah"]))
    settings.update(ppo_kwargs)
    network = PolicyNetwork(task_obj.obs_size, task_obj.action_size,
                            tuple(net_kw.get("policy_hidden_layer_sizes", (32,) * 4)),
                            net_kw.get("activation", "swish"))
    value_hidden = tuple(net_kw.get("value_hidden_layer_sizes", (256,) * 5))
    factory = functools.partial(
        ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=network.hidden_layer_sizes,
        value_hidden_layer_sizes=value_hidden, activation=ACTIVATIONS[network.activation])
    return Setup(task, backend, task_obj, settings, network, value_hidden, factory, seed,
                 num_timesteps, num_snapshots, eval_episodes)


def _diverged_error(task: str, snapshots: list) -> RuntimeError:
    """brax's pmap.assert_is_replicated compares the state with itself: NaN != NaN."""
    nan = any(not np.all(np.isfinite(np.asarray(x)))
              for x in jax.tree.leaves(snapshots[-1][2])) if snapshots else False
    return RuntimeError(
        f"{task}: Brax PPO training failed its replication check after "
        f"{snapshots[-1][0] if snapshots else 0:,} steps"
        f"{' (the latest policy parameters hold NaN/inf: training diverged)' if nan else ''};"
        f" nothing was written. Try a smaller learning_rate, reward_scaling=1 or "
        f"max_grad_norm=1 (--ppo KEY=VALUE), or another backend (--backend)")


def run_ppo(setup: Setup, log: Callable[[str], None]) -> Trained:
    """Runs ``ppo.train`` once, keeping each policy it hands to ``policy_params_fn``.

    Raises:
        RuntimeError: Brax's replication check failed (diverged training); nothing is written.
    """
    from brax.training.agents.ppo import train as ppo_train

    task = setup.task
    snapshots, curve = [], []
    t0 = time.perf_counter()

    def on_params(step, make_policy, params):
        del make_policy
        normalizer, policy, _ = params
        snapshots.append((int(step), time.perf_counter() - t0, PPOPolicyParams(
            jnp.asarray(normalizer.mean), jnp.asarray(normalizer.std), jax.device_get(policy))))
        log(f"[{task}] snapshot {len(snapshots) - 1} at step {int(step):,}, "
            f"{time.perf_counter() - t0:.0f} s")

    def on_progress(step, metrics):
        if "episode/sum_reward" in metrics:  # training episodes (stochastic policy)
            curve.append([int(step), round(float(metrics["episode/sum_reward"]), 2)])
            log(f"[{task}] step {int(step):,}: training episode return {curve[-1][1]}, "
                f"{time.perf_counter() - t0:.0f} s")

    try:
        with compat.brax_jax_compat():
            ppo_train.train(environment=setup.task_obj.env, num_timesteps=setup.num_timesteps,
                            episode_length=setup.task_obj.episode_length,
                            num_evals=setup.num_snapshots, run_evals=False,
                            log_training_metrics=True, seed=setup.seed,
                            network_factory=setup.factory, progress_fn=on_progress,
                            policy_params_fn=on_params, **setup.settings)
    except AssertionError as e:
        raise _diverged_error(task, snapshots) from e
    return Trained(snapshots, curve, time.perf_counter() - t0)


def measure(setup: Setup, trained: Trained) -> Measured:
    """Evaluates every snapshot and the uniform policy (same key: same starts); picks medium."""
    t1 = time.perf_counter()
    task_obj = setup.task_obj
    key_eval = jax.random.key(setup.seed + _EVAL_SEED_OFFSET)  # one key: the same starts for all
    rets = evaluate_policies(task_obj, make_ppo_policy_fn(setup.network),
                             [p for _, _, p in trained.snapshots], setup.eval_episodes, key_eval)
    rand = evaluate_policies(task_obj, uniform_random_policy(task_obj.action_size), [None],
                             setup.eval_episodes, key_eval)[0]
    eval_time = time.perf_counter() - t1
    r_random, r_expert = rand["mean"], rets[-1]["mean"]
    if not r_expert > r_random:
        warnings.warn(f"{setup.task}: the trained policy ({r_expert:.1f}) does not beat the "
                      f"uniform policy ({r_random:.1f}); its levels are not meaningful")
    medium = choose_medium([r["mean"] for r in rets], r_random, r_expert)
    return Measured(rets, rand, eval_time, medium)


def save_policies(task_dir: pathlib.Path, trained: Trained, measured: Measured
                  ) -> tuple[list[dict], dict]:
    """Replaces ``task_dir``'s ``snapshot_XX.npz``, ``medium.npz`` and ``expert.npz``.

    Returns:
        ``(entries, levels)``: the manifest's entry per snapshot and per level (``medium`` with its
        ``fraction_of_expert``).
    """
    snapshots = trained.snapshots
    task_dir.mkdir(parents=True, exist_ok=True)
    for old in list(task_dir.glob("snapshot_*.npz")) + [task_dir / "medium.npz",
                                                        task_dir / "expert.npz"]:
        old.unlink(missing_ok=True)
    entries = []
    for i, ((step, wall, params), r) in enumerate(zip(snapshots, measured.rets)):
        save_params(task_dir / f"snapshot_{i:02d}.npz", params)
        entries.append({"snapshot": i, "file": f"snapshot_{i:02d}.npz", "step": step,
                        "wall_s": round(wall, 1), "mean_return": round(r["mean"], 3),
                        "std_return": round(r["std"], 3), "mean_length": r["length"]})
    levels = {}
    for level, i in (("medium", measured.medium), ("expert", len(snapshots) - 1)):
        save_params(task_dir / f"{level}.npz", snapshots[i][2])
        levels[level] = dict(entries[i], file=f"{level}.npz")
    r_random, span = measured.r_random, measured.r_expert - measured.r_random
    levels["medium"]["fraction_of_expert"] = round((levels["medium"]["mean_return"] - r_random)
                                                   / span, 3) if span > 0 else None
    return entries, levels


def make_manifest(setup: Setup, trained: Trained, measured: Measured, entries: list[dict],
                  levels: dict) -> dict:
    """The ``manifest.json`` of one task (settings, timings, every snapshot's return)."""
    steps, times, seed = trained.steps, trained.times, setup.seed
    steady = ((steps[-1] - steps[1]) / max(times[-1] - times[1], 1e-9) if len(steps) > 2
              else None)
    return {
        "task": setup.task, "backend": setup.backend,
        "episode_length": setup.task_obj.episode_length,
        "algorithm": "brax.training.agents.ppo", "network": dict(
            setup.network.to_json(), value_hidden_layer_sizes=list(setup.value_hidden)),
        "ppo": setup.settings, "seed": seed, "num_timesteps": setup.num_timesteps,
        "env_steps": steps[-1], "train_time_s": round(trained.train_time, 1),
        "steady_steps_per_s": steady and round(steady),
        "first_snapshot_wall_s": round(times[1], 1), "eval_time_s": round(measured.eval_time, 1),
        "eval": {"episodes": setup.eval_episodes, "deterministic": True,
                 "evaluator": "bremen_jax.envs.acting.make_evaluator",
                 "key": f"jax.random.key({seed + _EVAL_SEED_OFFSET})"},
        "random": {"mean_return": round(measured.r_random, 3),
                   "std_return": round(measured.rand["std"], 3)},
        "levels": levels, "snapshots": entries, "training_curve": trained.curve,
        "versions": {"jax": jax.__version__, "brax": _brax_version()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def update_references(out_dir, setup: Setup, trained: Trained, measured: Measured) -> None:
    """Sets ``setup.task``'s entry in ``<out_dir>/references.json`` (the others are kept)."""
    refs = read_references(out_dir)
    refs[setup.task] = {
        "random": round(measured.r_random, 3), "expert": round(measured.r_expert, 3),
        "backend": setup.backend, "episodes": setup.eval_episodes, "source": (
            f"measured by train_behavior: uniform U(-1,1) policy vs the final Brax PPO "
            f"policy ({trained.steps[-1]:,} env steps, seed {setup.seed}), deterministic, "
            f"episodes of up to {setup.task_obj.episode_length} steps")}
    _write_json(artifact_dir(out_dir) / REFERENCES, dict(sorted(refs.items())))


def make_report(manifest: dict, measured: Measured, entries: list[dict], levels: dict,
                task_dir: pathlib.Path) -> dict:
    """:func:`train_behavior`'s return value: returns per level and snapshot, steps, times."""
    report = {k: manifest[k] for k in ("task", "backend", "num_timesteps", "env_steps",
                                        "train_time_s", "steady_steps_per_s", "eval_time_s")}
    report.update(returns={"random": round(measured.r_random, 3),
                           "medium": levels["medium"]["mean_return"],
                           "expert": round(measured.r_expert, 3)},
                  medium_snapshot=measured.medium,
                  medium_fraction=levels["medium"]["fraction_of_expert"],
                  snapshot_returns=[e["mean_return"] for e in entries], out_dir=str(task_dir))
    return report


def train_behavior(task: str, *, num_timesteps: int, seed: int = 0, out_dir=None,
                   backend: str | None = None, num_snapshots: int = 10, eval_episodes: int = 10,
                   log: Callable[[str], None] = print, **ppo_kwargs) -> dict:
    """Trains ``task``'s behaviour policies with Brax PPO, measures them, saves them.

    ``ppo.train`` runs on ``make_task(task, backend).env`` (episode length 1000) with
    :data:`PPO_SETTINGS` updated by ``ppo_kwargs`` (any ``ppo.train`` argument, plus
    :data:`NETWORK_KWARGS`); ``num_snapshots`` policies are kept (step 0 and ``num_snapshots - 1``
    evenly spaced points; the last is the expert). Every snapshot and the uniform policy are
    evaluated over ``eval_episodes`` deterministic episodes with our evaluator; ``medium`` is chosen
    by :func:`choose_medium`. Writes ``<out_dir>/<task>/`` and updates
    ``<out_dir>/references.json`` (``out_dir`` defaults to
    :data:`~bremen_jax.datasets.behavior_policies.DEFAULT_DIRECTORY`).

    Returns:
        A report: returns per level and snapshot, env steps, wall times, steady steps/s.
    """
    setup = ppo_setup(task, num_timesteps=num_timesteps, seed=seed, backend=backend,
                      num_snapshots=num_snapshots, eval_episodes=eval_episodes,
                      ppo_kwargs=ppo_kwargs)
    trained = run_ppo(setup, log)
    log(f"[{task}] trained {trained.steps[-1]:,} steps in {trained.train_time:.0f} s; evaluating")
    measured = measure(setup, trained)
    task_dir = artifact_dir(out_dir) / task
    entries, levels = save_policies(task_dir, trained, measured)
    manifest = make_manifest(setup, trained, measured, entries, levels)
    _write_json(task_dir / MANIFEST, manifest)
    update_references(out_dir, setup, trained, measured)
    report = make_report(manifest, measured, entries, levels, task_dir)
    log(f"[{task}] {json.dumps(report)}")
    return report


def _write_json(path: pathlib.Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _brax_version() -> str:
    import brax
    return getattr(brax, "__version__", "unknown")
