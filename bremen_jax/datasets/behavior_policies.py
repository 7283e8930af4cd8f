"""Behaviour policies for offline datasets, trained with Brax's own PPO (issue 6).

The original's datasets come from a partially trained SAC policy (reference §10.2, BRAC's
``agent_partial_target``); D4RL levels (anchors §5) are ``random`` (uniform actions), ``medium``
(a policy stopped at about a third to a half of the expert's return) and ``expert``. Here the
policies are trained by :func:`brax.training.agents.ppo.train.train` (the library, not a
re-implementation) on a task's :class:`~bremen_jax.envs.TaskEnv`, so they optimise the BREMEN task
reward on the BREMEN task observation, and PPO's ``EpisodeWrapper``/``AutoResetWrapper`` end
episodes on the task's termination (``State.done``) or after ``task.episode_length`` steps.

Artefacts (``directory``, default :data:`DEFAULT_DIRECTORY`)::

    references.json               {task: {"random", "expert", "backend", "episodes", "source"}}
    <task>/manifest.json          network sizes, PPO settings, timings, every snapshot's return
    <task>/snapshot_XX.npz        policy MLP params + observation normaliser at each snapshot
    <task>/medium.npz, expert.npz copies of the chosen snapshots

Each ``.npz`` is a flat dict of named arrays (``obs_mean``, ``obs_std``,
``policy/params/hidden_0/kernel``, ...): loading needs neither orbax nor pickle, and the inference
function is rebuilt with :mod:`brax.training.agents.ppo.networks`. Every return in the manifest and
in ``references.json`` is measured with :func:`bremen_jax.envs.acting.make_evaluator` (the
deterministic mean action, episodes of up to 1000 steps ended by the task's termination).
:func:`train_behavior` trains, measures and saves one task's policies.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import inspect
import json
import math
import pathlib
import time
import warnings
from typing import Any, Callable, Sequence

import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from brax.training.acme import running_statistics
from brax.training.agents.ppo import networks as ppo_networks
from flax import linen

from bremen_jax.datasets import compat
from bremen_jax.envs.acting import make_evaluator, uniform_random_policy
from bremen_jax.envs import Task, list_tasks, make_task, task_specs
from bremen_jax.types import Params, PolicyFn, PRNGKey

LEVELS = ("random", "medium", "expert")
DEFAULT_DIRECTORY = pathlib.Path(__file__).resolve().parent / "behaviors"
MANIFEST = "manifest.json"
REFERENCES = "references.json"
ACTIVATIONS = {"swish": linen.swish, "relu": linen.relu, "tanh": linen.tanh, "elu": linen.elu}


@dataclasses.dataclass(frozen=True, eq=False)
class Behavior:
    """A behaviour policy at one level (hashable by identity: ``params`` is a pytree).

    Attributes:
        task: task name.
        level: ``"random"``, ``"medium"``, ``"expert"`` or ``"snapshot_XX"`` (see
            :func:`load_snapshots`).
        policy_fn: ``(params, obs[obs_dim], key) -> action[act_dim]``; the deterministic mean
            action clipped to ``[-1, 1]`` (``random``: ``U(-1, 1)`` draws from ``key``).
        params: :class:`PPOPolicyParams` (``None`` for ``random``).
        mean_return: task return measured with our evaluator (NaN for ``random`` when the task has
            no references).
        meta: manifest entry (step, backend, episodes, std, ...).
    """

    task: str
    level: str
    policy_fn: PolicyFn
    params: Any
    mean_return: float
    meta: dict


@flax.struct.dataclass
class PPOPolicyParams:
    """What Brax PPO inference needs: observation normaliser + policy MLP params.

    Attributes:
        obs_mean: ``[obs_dim]`` float32 running mean of the observations.
        obs_std: ``[obs_dim]`` float32 running std (``normalize`` divides by it).
        policy: flax params of Brax's policy MLP (``{"params": {"hidden_i": {kernel, bias}}}``).
    """

    obs_mean: jax.Array
    obs_std: jax.Array
    policy: Params


@dataclasses.dataclass(frozen=True)
class PolicyNetwork:
    """Static description of Brax's PPO policy network (``make_ppo_networks`` defaults)."""

    obs_size: int
    action_size: int
    hidden_layer_sizes: tuple[int, ...] = (32, 32, 32, 32)
    activation: str = "swish"

    def __post_init__(self):
        for field in ("obs_size", "action_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"PolicyNetwork.{field} must be a positive int, got {value!r}")
        if not all(isinstance(h, int) and h > 0 for h in self.hidden_layer_sizes):
            raise ValueError("PolicyNetwork.hidden_layer_sizes must be positive ints, got "
                             f"{self.hidden_layer_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"PolicyNetwork.activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {self.activation!r}")

    def to_json(self) -> dict:
        return {"obs_size": self.obs_size, "action_size": self.action_size,
                "hidden_layer_sizes": list(self.hidden_layer_sizes),
                "activation": self.activation, "distribution": "tanh_normal"}

    @classmethod
    def from_json(cls, d: dict) -> "PolicyNetwork":
        return cls(int(d["obs_size"]), int(d["action_size"]),
                   tuple(int(h) for h in d["hidden_layer_sizes"]), str(d["activation"]))

    def make_networks(self) -> ppo_networks.PPONetworks:
        """Brax's PPO networks with the running-statistics observation normaliser."""
        return ppo_networks.make_ppo_networks(
            self.obs_size, self.action_size,
            preprocess_observations_fn=running_statistics.normalize,
            policy_hidden_layer_sizes=self.hidden_layer_sizes,
            activation=ACTIVATIONS[self.activation])


def make_ppo_policy_fn(network: PolicyNetwork) -> PolicyFn:
    """``policy_fn(PPOPolicyParams, obs[o], key) -> action[a]``: Brax's deterministic inference.

    Rebuilt with ``ppo_networks.make_inference_fn`` (``tanh`` of the Gaussian mean), then clipped
    to ``[-1, 1]``. Works on any leading batch shape of ``obs``.
    """
    make_policy = ppo_networks.make_inference_fn(network.make_networks())

    def policy_fn(params: PPOPolicyParams, obs: jax.Array, key: PRNGKey) -> jax.Array:
        mean_std = running_statistics.NestedMeanStd(mean=params.obs_mean, std=params.obs_std)
        action, _ = make_policy((mean_std, params.policy), deterministic=True)(obs, key)
        return jnp.clip(action, -1.0, 1.0)

    return policy_fn


def params_to_arrays(params: PPOPolicyParams) -> dict[str, np.ndarray]:
    """Flat ``{name: float32 ndarray}`` (``obs_mean``, ``obs_std``, ``policy/params/...``)."""
    flat = flax.traverse_util.flatten_dict(jax.device_get(params.policy), sep="/")
    arrays = {f"policy/{k}": np.asarray(v, np.float32) for k, v in flat.items()}
    arrays["obs_mean"] = np.asarray(params.obs_mean, np.float32)
    arrays["obs_std"] = np.asarray(params.obs_std, np.float32)
    return arrays


def arrays_to_params(arrays: dict, network: PolicyNetwork, source: str = "arrays"
                     ) -> PPOPolicyParams:
    """Inverse of :func:`params_to_arrays`, checked against ``network``'s shapes.

    Raises:
        ValueError: missing/extra arrays or shapes that do not match ``network``.
    """
    expected = flax.traverse_util.flatten_dict(
        jax.eval_shape(network.make_networks().policy_network.init, jax.random.key(0)), sep="/")
    want = {f"policy/{k}": tuple(v.shape) for k, v in expected.items()}
    want["obs_mean"] = want["obs_std"] = (network.obs_size,)
    got = {k: tuple(np.shape(v)) for k, v in arrays.items()}
    if got != want:
        diff = sorted(set(got.items()) ^ set(want.items()))
        raise ValueError(f"{source}: arrays do not match the policy network {network}; "
                         f"differing (name, shape) entries: {diff}")
    policy = flax.traverse_util.unflatten_dict(
        {k[len("policy/"):]: jnp.asarray(v, jnp.float32) for k, v in arrays.items()
         if k.startswith("policy/")}, sep="/")
    return PPOPolicyParams(obs_mean=jnp.asarray(arrays["obs_mean"], jnp.float32),
                           obs_std=jnp.asarray(arrays["obs_std"], jnp.float32), policy=policy)


def save_params(path: str | pathlib.Path, params: PPOPolicyParams) -> None:
    """Writes ``params`` as a flat ``.npz`` of named arrays."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **params_to_arrays(params))


def load_params(path: str | pathlib.Path, network: PolicyNetwork) -> PPOPolicyParams:
    """Reads a ``.npz`` written by :func:`save_params` (FileNotFoundError when missing)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"behaviour policy file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays_to_params(arrays, network, source=str(path))


def evaluate_policies(task: Task, policy_fn: PolicyFn, params_list: Sequence[Any],
                      num_episodes: int, key: PRNGKey) -> list[dict[str, float]]:
    """Mean/std task return of each params (one compile; the same key for all, so the same starts).

    Episodes run to the task's termination or ``task.episode_length`` steps
    (:func:`~bremen_jax.envs.acting.make_evaluator`). Returns ``[{"mean", "std", "length"}]``.
    """
    evaluate = jax.jit(make_evaluator(task, policy_fn, num_episodes))
    out = []
    for params in params_list:
        m = jax.device_get(evaluate(params, key))
        out.append({"mean": float(m["return_mean"]), "std": float(m["return_std"]),
                    "length": float(m["length_mean"])})
    return out


# ------------------------------------------------------------------------------------------------
# Loading shipped / trained behaviours.

def _dir(directory) -> pathlib.Path:
    return DEFAULT_DIRECTORY if directory is None else pathlib.Path(directory)


def _check_task_name(task: str) -> None:
    if not isinstance(task, str) or task not in list_tasks():
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(list_tasks())}")


def _check_level(level: str, allowed: Sequence[str] = LEVELS) -> None:
    if level not in allowed:
        raise ValueError(f"unknown level {level!r}; valid levels: {', '.join(allowed)}")


def read_manifest(task: str, directory=None) -> dict:
    """``<directory>/<task>/manifest.json`` (FileNotFoundError naming the path when missing)."""
    _check_task_name(task)
    path = _dir(directory) / task / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no behaviour policies for task {task!r}: {path} does not exist; train them with "
            f"`python -m experiments.train_behavior --task {task}`")
    return json.loads(path.read_text())


def read_references(directory=None) -> dict:
    """All pinned references ``{task: {...}}`` (empty dict when the file does not exist)."""
    path = _dir(directory) / REFERENCES
    return json.loads(path.read_text()) if path.is_file() else {}


def reference_returns(task: str, directory=None) -> tuple[float, float]:
    """``(R_random, R_expert)`` pinned in ``references.json`` for normalised scores.

    Raises:
        ValueError: unknown task, or no references recorded for it.
    """
    _check_task_name(task)
    refs = read_references(directory)
    if task not in refs:
        raise ValueError(
            f"no reference returns for task {task!r} in {_dir(directory) / REFERENCES} (tasks with "
            f"references: {', '.join(sorted(refs)) or 'none'}); train its behaviour policies with "
            f"`python -m experiments.train_behavior --task {task}`")
    return float(refs[task]["random"]), float(refs[task]["expert"])


def _random_behavior(task: str, directory) -> Behavior:
    refs = read_references(directory).get(task)
    try:
        action_size = int(read_manifest(task, directory)["network"]["action_size"])
    except FileNotFoundError:
        action_size = make_task(task).action_size
    mean = float(refs["random"]) if refs else math.nan
    meta = dict(refs or {}, policy="uniform U(-1, 1)")
    return Behavior(task, "random", uniform_random_policy(action_size), None, mean, meta)


def _ppo_behavior(task: str, level: str, manifest: dict, entry: dict, directory) -> Behavior:
    network = PolicyNetwork.from_json(manifest["network"])
    params = load_params(_dir(directory) / task / entry["file"], network)
    meta = dict(entry, backend=manifest["backend"], episodes=manifest["eval"]["episodes"],
                network=manifest["network"])
    return Behavior(task, level, make_ppo_policy_fn(network), params, float(entry["mean_return"]),
                    meta)


def load_behavior(task: str, level: str, directory=None) -> Behavior:
    """The behaviour policy of ``task`` at ``level`` (one of :data:`LEVELS`).

    ``random`` is the uniform ``U(-1, 1)`` policy with its mean return from ``references.json``;
    ``medium``/``expert`` are the saved PPO snapshots.

    Raises:
        ValueError: unknown task or level, or a file that does not match its manifest.
        FileNotFoundError: no manifest or policy file for the task.
    """
    _check_task_name(task)
    _check_level(level)
    if level == "random":
        return _random_behavior(task, directory)
    manifest = read_manifest(task, directory)
    return _ppo_behavior(task, level, manifest, manifest["levels"][level], directory)


def load_snapshots(task: str, up_to: str = "medium", directory=None) -> list[Behavior]:
    """Training history for D4RL ``medium-replay``: ``random``, then the PPO snapshots in order.

    The list is the uniform policy followed by every saved snapshot (step 0 = the initial PPO
    policy) up to and including the one chosen as ``up_to`` (``"medium"`` or ``"expert"``; ``random``
    gives just the uniform policy). Levels are named ``snapshot_XX``.
    """
    _check_task_name(task)
    _check_level(up_to)
    out = [_random_behavior(task, directory)]
    if up_to == "random":
        return out
    manifest = read_manifest(task, directory)
    last = manifest["levels"][up_to]["snapshot"]
    for entry in manifest["snapshots"][:last + 1]:
        out.append(_ppo_behavior(task, f"snapshot_{entry['snapshot']:02d}", manifest, entry,
                                 directory))
    return out


# ------------------------------------------------------------------------------------------------
# Training with brax.training.agents.ppo.

# Per task (from its TaskSpec, bremen_jax/envs/tasks/<task>.py): the backend the shipped configs
# train BREMEN on, so the datasets come from the same physics, and the task's PPO settings (Brax's
# published ones, see envs/tasks/_common.py), on top of these env counts scaled down from 2048-4096
# envs for a CPU.
TASK_BACKENDS = {name: spec.default_backend for name, spec in task_specs().items()}
_PPO_COMMON = dict(normalize_observations=True, action_repeat=1, num_envs=64, batch_size=64,
                   num_minibatches=16)
PPO_SETTINGS = {name: dict(spec.behavior_ppo) for name, spec in task_specs().items()}
NETWORK_KWARGS = ("policy_hidden_layer_sizes", "value_hidden_layer_sizes", "activation")
# ppo.train arguments set by train_behavior itself.
_RESERVED = ("environment", "num_timesteps", "episode_length", "num_evals", "run_evals", "seed",
             "network_factory", "progress_fn", "policy_params_fn", "log_training_metrics")
MEDIUM_FRACTION = (1.0 / 3.0, 0.5)


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


def _write_json(path: pathlib.Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


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
    ``<out_dir>/references.json`` (``out_dir`` defaults to :data:`DEFAULT_DIRECTORY`).

    Returns:
        A report: returns per level and snapshot, env steps, wall times, steady steps/s.
    """
    _check_task_name(task)
    for field, value in (("num_timesteps", num_timesteps), ("num_snapshots", num_snapshots),
                         ("eval_episodes", eval_episodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{field} must be a positive int, got {value!r}")
    if num_snapshots < 3:
        raise ValueError(
            f"num_snapshots must be >= 3 (initial, medium, expert), got {num_snapshots}")
    from brax.training.agents.ppo import train as ppo_train  # heavy import, only for training

    backend = TASK_BACKENDS.get(task, "generalized") if backend is None else backend
    task_obj = make_task(task, backend=backend, episode_length=1000)
    net_kw = {k: ppo_kwargs.pop(k) for k in list(ppo_kwargs) if k in NETWORK_KWARGS}
    valid = set(inspect.signature(ppo_train.train).parameters) - set(_RESERVED)
    bad = sorted(set(ppo_kwargs) - valid)
    if bad:
        raise ValueError(f"unknown or reserved ppo_kwargs {bad}; valid: {sorted(valid)} and "
                         f"{list(NETWORK_KWARGS)}")
    settings = dict(_PPO_COMMON, **PPO_SETTINGS.get(task, PPO_SETTINGS["halfcheetah"]))
    settings.update(ppo_kwargs)
    network = PolicyNetwork(task_obj.obs_size, task_obj.action_size,
                            tuple(net_kw.get("policy_hidden_layer_sizes", (32,) * 4)),
                            net_kw.get("activation", "swish"))
    value_hidden = tuple(net_kw.get("value_hidden_layer_sizes", (256,) * 5))
    factory = functools.partial(
        ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=network.hidden_layer_sizes,
        value_hidden_layer_sizes=value_hidden, activation=ACTIVATIONS[network.activation])

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
            ppo_train.train(environment=task_obj.env, num_timesteps=num_timesteps,
                            episode_length=task_obj.episode_length, num_evals=num_snapshots,
                            run_evals=False, log_training_metrics=True, seed=seed,
                            network_factory=factory, progress_fn=on_progress,
                            policy_params_fn=on_params, **settings)
    except AssertionError as e:
        # brax's pmap.assert_is_replicated compares the state with itself: NaN != NaN
        nan = any(not np.all(np.isfinite(np.asarray(x)))
                  for x in jax.tree.leaves(snapshots[-1][2])) if snapshots else False
        raise RuntimeError(
            f"{task}: Brax PPO training failed its replication check after "
            f"{snapshots[-1][0] if snapshots else 0:,} steps"
            f"{' (the latest policy parameters hold NaN/inf: training diverged)' if nan else ''};"
            f" nothing was written. Try a smaller learning_rate, reward_scaling=1 or "
            f"max_grad_norm=1 (--ppo KEY=VALUE), or another backend (--backend)") from e
    train_time = time.perf_counter() - t0
    steps = [s for s, _, _ in snapshots]
    times = [t for _, t, _ in snapshots]
    steady = (steps[-1] - steps[1]) / max(times[-1] - times[1], 1e-9) if len(steps) > 2 else None

    log(f"[{task}] trained {steps[-1]:,} steps in {train_time:.0f} s; evaluating")
    t1 = time.perf_counter()
    key_eval = jax.random.key(seed + 1_000_003)  # one key: every policy sees the same starts
    rets = evaluate_policies(task_obj, make_ppo_policy_fn(network), [p for _, _, p in snapshots],
                             eval_episodes, key_eval)
    rand = evaluate_policies(task_obj, uniform_random_policy(task_obj.action_size), [None],
                             eval_episodes, key_eval)[0]
    eval_time = time.perf_counter() - t1
    r_random, r_expert = rand["mean"], rets[-1]["mean"]
    if not r_expert > r_random:
        warnings.warn(f"{task}: the trained policy ({r_expert:.1f}) does not beat the uniform "
                      f"policy ({r_random:.1f}); its levels are not meaningful")
    medium = choose_medium([r["mean"] for r in rets], r_random, r_expert)

    task_dir = _dir(out_dir) / task
    task_dir.mkdir(parents=True, exist_ok=True)
    for old in list(task_dir.glob("snapshot_*.npz")) + [task_dir / "medium.npz",
                                                        task_dir / "expert.npz"]:
        old.unlink(missing_ok=True)
    entries = []
    for i, ((step, wall, params), r) in enumerate(zip(snapshots, rets)):
        save_params(task_dir / f"snapshot_{i:02d}.npz", params)
        entries.append({"snapshot": i, "file": f"snapshot_{i:02d}.npz", "step": step,
                        "wall_s": round(wall, 1), "mean_return": round(r["mean"], 3),
                        "std_return": round(r["std"], 3), "mean_length": r["length"]})
    levels = {}
    for level, i in (("medium", medium), ("expert", len(snapshots) - 1)):
        save_params(task_dir / f"{level}.npz", snapshots[i][2])
        levels[level] = dict(entries[i], file=f"{level}.npz")
    span = r_expert - r_random
    levels["medium"]["fraction_of_expert"] = round((levels["medium"]["mean_return"] - r_random)
                                                   / span, 3) if span > 0 else None
    manifest = {
        "task": task, "backend": backend, "episode_length": task_obj.episode_length,
        "algorithm": "brax.training.agents.ppo", "network": dict(
            network.to_json(), value_hidden_layer_sizes=list(value_hidden)),
        "ppo": settings, "seed": seed, "num_timesteps": num_timesteps, "env_steps": steps[-1],
        "train_time_s": round(train_time, 1), "steady_steps_per_s": steady and round(steady),
        "first_snapshot_wall_s": round(times[1], 1), "eval_time_s": round(eval_time, 1),
        "eval": {"episodes": eval_episodes, "deterministic": True,
                 "evaluator": "bremen_jax.envs.acting.make_evaluator",
                 "key": f"jax.random.key({seed + 1_000_003})"},
        "random": {"mean_return": round(r_random, 3), "std_return": round(rand["std"], 3)},
        "levels": levels, "snapshots": entries, "training_curve": curve,
        "versions": {"jax": jax.__version__, "brax": _brax_version()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json(task_dir / MANIFEST, manifest)
    refs = read_references(out_dir)
    refs[task] = {"random": round(r_random, 3), "expert": round(r_expert, 3), "backend": backend,
                  "episodes": eval_episodes, "source": (
                      f"measured by train_behavior: uniform U(-1,1) policy vs the final Brax PPO "
                      f"policy ({steps[-1]:,} env steps, seed {seed}), deterministic, "
                      f"episodes of up to {task_obj.episode_length} steps")}
    _write_json(_dir(out_dir) / REFERENCES, dict(sorted(refs.items())))
    report = {k: manifest[k] for k in ("task", "backend", "num_timesteps", "env_steps",
                                        "train_time_s", "steady_steps_per_s", "eval_time_s")}
    report.update(returns={"random": round(r_random, 3), "medium": levels["medium"]["mean_return"],
                           "expert": round(r_expert, 3)},
                  medium_snapshot=medium, medium_fraction=levels["medium"]["fraction_of_expert"],
                  snapshot_returns=[e["mean_return"] for e in entries], out_dir=str(task_dir))
    log(f"[{task}] {json.dumps(report)}")
    return report


def _brax_version() -> str:
    import brax
    return getattr(brax, "__version__", "unknown")
