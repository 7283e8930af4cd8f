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
This module loads the artefacts; :func:`bremen_jax.datasets.behavior_training.train_behavior`
trains, measures and saves one task's policies.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Sequence

import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from brax.training.acme import running_statistics
from brax.training.agents.ppo import networks as ppo_networks
from flax import linen

from bremen_jax.envs import list_tasks, make_task, task_specs
from bremen_jax.envs.acting import uniform_random_policy
from bremen_jax.types import Params, PolicyFn, PRNGKey

LEVELS = ("random", "medium", "expert")
DEFAULT_DIRECTORY = pathlib.Path(__file__).resolve().parent / "behaviors"
MANIFEST = "manifest.json"
REFERENCES = "references.json"
ACTIVATIONS = {"swish": linen.swish, "relu": linen.relu, "tanh": linen.tanh, "elu": linen.elu}
# Per task (from its TaskSpec, bremen_jax/envs/tasks/<task>.py): the backend the shipped configs
# train BREMEN on, so the datasets come from the same physics.
TASK_BACKENDS = {name: spec.default_backend for name, spec in task_specs().items()}


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
        key: a description of ``policy_fn`` with a stable ``repr`` (``("uniform", a)``,
            ``("brax_ppo", network_json)``): what a stored collector is keyed by
            (:class:`bremen_jax.datasets.mixtures.PolicySource`).
    """

    task: str
    level: str
    policy_fn: PolicyFn
    params: Any
    mean_return: float
    meta: dict
    key: Any = None


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


# ------------------------------------------------------------------------------------------------
# Loading shipped / trained behaviours.

def artifact_dir(directory) -> pathlib.Path:
    return DEFAULT_DIRECTORY if directory is None else pathlib.Path(directory)


def check_task_name(task: str) -> None:
    if not isinstance(task, str) or task not in list_tasks():
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(list_tasks())}")


def _check_level(level: str, allowed: Sequence[str] = LEVELS) -> None:
    if level not in allowed:
        raise ValueError(f"unknown level {level!r}; valid levels: {', '.join(allowed)}")


def read_manifest(task: str, directory=None) -> dict:
    """``<directory>/<task>/manifest.json`` (FileNotFoundError naming the path when missing)."""
    check_task_name(task)
    path = artifact_dir(directory) / task / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no behaviour policies for task {task!r}: {path} does not exist; train them with "
            f"`python -m experiments.train_behavior --task {task}`")
    return json.loads(path.read_text())


def read_references(directory=None) -> dict:
    """All pinned references ``{task: {...}}`` (empty dict when the file does not exist)."""
    path = artifact_dir(directory) / REFERENCES
    return json.loads(path.read_text()) if path.is_file() else {}


def reference_returns(task: str, directory=None) -> tuple[float, float]:
    """``(R_random, R_expert)`` pinned in ``references.json`` for normalised scores.

    Raises:
        ValueError: unknown task, or no references recorded for it.
    """
    check_task_name(task)
    refs = read_references(directory)
    if task not in refs:
        raise ValueError(
            f"no reference returns for task {task!r} in {artifact_dir(directory) / REFERENCES} "
            f"(tasks with references: {', '.join(sorted(refs)) or 'none'}); train its behaviour "
            f"policies with `python -m experiments.train_behavior --task {task}`")
    return float(refs[task]["random"]), float(refs[task]["expert"])


def _random_behavior(task: str, directory) -> Behavior:
    refs = read_references(directory).get(task)
    try:
        action_size = int(read_manifest(task, directory)["network"]["action_size"])
    except FileNotFoundError:
        action_size = make_task(task).action_size
    mean = float(refs["random"]) if refs else math.nan
    meta = dict(refs or {}, policy="uniform U(-1, 1)")
    return Behavior(task, "random", uniform_random_policy(action_size), None, mean, meta,
                    key=("uniform", action_size))


def _ppo_behavior(task: str, level: str, manifest: dict, entry: dict, directory) -> Behavior:
    network = PolicyNetwork.from_json(manifest["network"])
    params = load_params(artifact_dir(directory) / task / entry["file"], network)
    meta = dict(entry, backend=manifest["backend"], episodes=manifest["eval"]["episodes"],
                network=manifest["network"])
    return Behavior(task, level, make_ppo_policy_fn(network), params, float(entry["mean_return"]),
                    meta, key=("brax_ppo", json.dumps(network.to_json(), sort_keys=True)))


def load_behavior(task: str, level: str, directory=None) -> Behavior:
    """The behaviour policy of ``task`` at ``level`` (one of :data:`LEVELS`).

    ``random`` is the uniform ``U(-1, 1)`` policy with its mean return from ``references.json``;
    ``medium``/``expert`` are the saved PPO snapshots.

    Raises:
        ValueError: unknown task or level, or a file that does not match its manifest.
        FileNotFoundError: no manifest or policy file for the task.
    """
    check_task_name(task)
    _check_level(level)
    if level == "random":
        return _random_behavior(task, directory)
    manifest = read_manifest(task, directory)
    return _ppo_behavior(task, level, manifest, manifest["levels"][level], directory)


def load_snapshots(task: str, up_to: str = "medium", directory=None) -> list[Behavior]:
    """Training history for D4RL ``medium-replay``: ``random``, then the PPO snapshots in order.

    The list is the uniform policy followed by every saved snapshot (step 0 = the initial PPO
    policy) up to and including the one chosen as ``up_to`` (``"medium"`` or ``"expert"``;
    ``random`` gives just the uniform policy). Levels are named ``snapshot_XX``.
    """
    check_task_name(task)
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
