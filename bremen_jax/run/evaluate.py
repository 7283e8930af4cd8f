"""``bremen evaluate``: a run's target and BC policies on real episodes, from a checkpoint.

:func:`restore_run` restores one checkpoint of a ``bremen train`` or ``bremen offline`` run
directory (the latest intact one, or the end of a chosen deployment) into the run's own
:class:`~bremen_jax.algo.phases.RunState`; :func:`evaluate_run` runs ``episodes`` real episodes of
its target policy (``state.learner.policy``) and of its behaviour clone (``state.bc.params``)
through :func:`bremen_jax.envs.acting.make_evaluator` -- one compiled program, called once per
policy with the same episode keys, so both policies start from the same states.

Checkpoint step of position ``(d, c)`` is ``d * (C + 1) + c`` (:mod:`bremen_jax.run.workdir`);
the end of deployment ``d`` is ``(d, C)``. Only the latest ``checkpoint.max_to_keep`` checkpoints
are on disk, so older deployments can usually not be evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import Phases, RunState, make_phases
from bremen_jax.envs import registry
from bremen_jax.envs.acting import make_evaluator
from bremen_jax.run import checkpoint as ckpt_lib
from bremen_jax.run.compile import compile_cached
from bremen_jax.run.files import atomic_write
from bremen_jax.run.workdir import load_run_config, load_run_info
from bremen_jax.types import check_positive_int

# (task name, {policy: return}) -> {policy: normalised score or None}, or None (no references);
# e.g. bremen_jax.datasets.scores.scores_or_none (the datasets layer sits above this one).
ScoreFn = Callable[[str, dict], "dict | None"]
POLICIES = ("target", "bc")


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """One restored checkpoint of a run directory.

    Attributes:
        workdir: the run directory.
        cfg: the run's stored config (``config.json``).
        kind: ``"train"`` or ``"offline"`` (``run.json``).
        phases: the run's phase functions (task, policy, ...).
        state: the restored :class:`~bremen_jax.algo.phases.RunState`.
        step: checkpoint step; ``position``: ``(deployment, chunk)`` of that checkpoint.
        skipped: one line per damaged newer checkpoint that was passed over (left in place).
    """

    workdir: pathlib.Path
    cfg: ml_collections.ConfigDict
    kind: str
    phases: Phases
    state: RunState
    step: int
    position: tuple[int, int]
    skipped: tuple[str, ...] = ()

    def params(self, policy: str) -> Any:
        """``"target"``: the learner's target policy; ``"bc"``: the behaviour clone."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        return self.state.learner.policy if policy == "target" else self.state.bc.params


def check_run_dir(run_dir: str | pathlib.Path) -> pathlib.Path:
    """``run_dir`` as a path; :class:`FileNotFoundError` (one line) unless it holds a run."""
    path = pathlib.Path(run_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a bremen run directory (no config.json); "
                                f"expected the --workdir of `bremen train` or `bremen offline`")
    return path


def _dims(spec: str) -> list[int]:
    """``"float32[100,4]" -> [100, 4]``."""
    inside = re.search(r"\[(.*)\]$", spec).group(1)
    return [int(d) for d in inside.split(",") if d]


def _phases_for(static, meta: dict) -> Phases:
    """The run's phases with the buffer sizes its checkpoint was written with (an offline run's
    buffer holds its dataset: capacity = dataset rows, one segment)."""
    leaves = meta["leaves"]
    try:
        capacity = _dims(leaves[".buffer.is_val"])[0]
        segments = _dims(leaves[".buffer.seg_start"])[0]
    except (KeyError, AttributeError, IndexError, ValueError):
        capacity = segments = None  # restore names the leaves that do not fit
    return make_phases(static, capacity=capacity, max_segments=segments)


def end_of_deployment_step(deployment: int, num_chunks: int) -> int:
    """Checkpoint step of position ``(deployment, C)``."""
    return deployment * (num_chunks + 1) + num_chunks


def _pick_step(ck: ckpt_lib.Checkpointer, cfg, deployment: int | None) -> list[int]:
    """Candidate steps, newest first: every kept one, or the end of ``deployment``."""
    steps = ck.steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {ck.directory}; the run has not saved one yet")
    if deployment is None:
        return steps[::-1]
    C = config_lib.split(cfg)[0].num_chunks
    if end_of_deployment_step(deployment, C) in steps:
        return [end_of_deployment_step(deployment, C)]
    kept = [s // (C + 1) for s in steps if s % (C + 1) == C]
    keep = int(cfg.checkpoint.max_to_keep)
    why = ("only the latest checkpoint is kept" if len(steps) == 1 else
           f"checkpoint.max_to_keep={keep} keeps the latest {keep} checkpoints")
    raise ValueError(f"no checkpoint of the end of deployment {deployment} in {ck.directory}; "
                     f"available deployments: {', '.join(map(str, kept)) or 'none'} ({why}; "
                     f"train with --config.checkpoint.max_to_keep=N to keep more)")


def restore_run(run_dir: str | pathlib.Path, deployment: int | None = None) -> RestoredRun:
    """Restores the newest intact checkpoint of a run (or the end of ``deployment``, 1-based).

    Damaged newer checkpoints are skipped (named in ``skipped``) and never moved: this only
    reads the run directory.

    Raises:
        FileNotFoundError: not a run directory, or no checkpoint.
        ValueError: ``deployment`` has no kept checkpoint (the message lists those that do).
        CheckpointError: the checkpoint does not fit the run's config, or none is intact.
    """
    workdir = check_run_dir(run_dir)
    cfg = load_run_config(workdir)
    kind = load_run_info(workdir).get("kind", "train")
    static, _ = config_lib.split(cfg)
    if deployment is not None:
        K = 1 if kind == "offline" else static.deploy.num_deployments
        if isinstance(deployment, bool) or not isinstance(deployment, int) or \
                not 1 <= deployment <= K:
            raise ValueError(f"deployment must be an int in 1..{K} (the run has {K}), got "
                             f"{deployment!r}")
    skipped = []
    with ckpt_lib.Checkpointer(workdir / "checkpoints") as ck:
        for step in _pick_step(ck, cfg, deployment):
            try:
                phases = _phases_for(static, ck.read_meta(step))
                abstract = jax.eval_shape(phases.init, jax.eval_shape(jax.random.key, 0))
                state, meta = ck.restore(abstract, step, json.loads(cfg.to_json()))
            except ckpt_lib.DamagedCheckpointError as e:
                skipped.append(str(e))
                continue
            pos = meta["position"]
            return RestoredRun(workdir, cfg, kind, phases, state, step,
                               (pos.get("deployment"), pos.get("chunk")), tuple(skipped))
    raise ckpt_lib.DamagedCheckpointError(f"no intact checkpoint in {workdir / 'checkpoints'}: "
                                          + "; ".join(skipped))


def make_episodes(task, policy_fn, episodes: int) -> Callable[[Any, jax.Array], dict]:
    """``run(params, keys[N]) -> {"returns", "native_returns", "lengths"}`` (each ``[N]``).

    Episode ``i`` is :func:`~bremen_jax.envs.acting.make_evaluator` with one episode and key
    ``keys[i]`` (vmapped; a finished episode waits, frozen, for the others): its reset state and
    action noise come from ``keys[i]`` alone.
    """
    one = make_evaluator(task, policy_fn, 1)

    def run(params, keys):
        m = jax.vmap(one, in_axes=(None, 0))(params, keys)
        return {"returns": m["return_mean"], "native_returns": m["native_return_mean"],
                "lengths": jnp.round(m["length_mean"]).astype(jnp.int32)}

    return run


def _policy_fn(run: RestoredRun, stochastic: bool):
    policy = run.phases.policy
    return policy.act_sample if stochastic else policy.act_deterministic


def _summary(out: dict) -> dict:
    r, n = np.asarray(out["returns"], np.float64), np.asarray(out["lengths"])
    return {"return_mean": float(r.mean()), "return_std": float(r.std()),
            "length_mean": float(n.mean()),
            "native_return_mean": float(np.mean(out["native_returns"])),
            "returns": [float(x) for x in r], "lengths": [int(x) for x in n]}


def evaluate_restored(run: RestoredRun, *, episodes: int = 10, stochastic: bool = False,
                      keys: jax.Array | None = None, seed: int = 0,
                      policies: tuple[str, ...] = POLICIES) -> dict[str, dict]:
    """``{policy: summary}`` of ``episodes`` episodes per policy (same keys for each).

    ``keys`` (``[episodes]`` typed keys) default to ``jax.random.split(key(seed), episodes)``.
    A summary has ``return_mean``, ``return_std``, ``length_mean``, ``native_return_mean`` and
    the per-episode ``returns``/``lengths``.
    """
    if keys is None:
        check_positive_int(episodes, "episodes")
        keys = jax.random.split(jax.random.key(seed), episodes)
    static = config_lib.split(run.cfg)[0]
    fn = make_episodes(run.phases.task, _policy_fn(run, stochastic), int(keys.shape[0]))
    params = run.params("target")
    exe = compile_cached(("evaluate", static, run.phases.task.name, stochastic), fn, params,
                         keys, precision=static.precision, effort=static.compile_effort,
                         kind="env", persist=registry.is_builtin(run.phases.task.name)).fn
    return {name: _summary(jax.device_get(exe(run.params(name), keys))) for name in policies}


def evaluate_run(run_dir: str | pathlib.Path, *, episodes: int = 10, stochastic: bool = False,
                 seed: int = 0, deployment: int | None = None,
                 score_fn: ScoreFn | None = None) -> dict[str, Any]:
    """Evaluates a run's target and BC policies (the JSON ``bremen evaluate`` writes).

    Args:
        run_dir: a ``bremen train`` / ``bremen offline`` work directory.
        episodes: real episodes per policy (up to the run's ``episode_length`` steps each).
        stochastic: sample actions from the policy's Gaussian (default: its mean action).
        seed: seed of the episode keys (both policies get the same keys).
        deployment: evaluate the end of this deployment (1-based; default: the latest
            checkpoint, whatever its position).
        score_fn: ``(task, {"target": R, "bc": R}) -> {name: score} | None``; normalised scores.
    Returns:
        ``{"run_dir", "kind", "task", "backend", "episode_length", "mode", "episodes", "seed",
        "checkpoint": {"step", "deployment", "chunk"}, "skipped_checkpoints",
        "policies": {"target": {...}, "bc": {...}}}``; each policy has ``return_mean``,
        ``return_std``, ``length_mean``, ``native_return_mean``, ``normalized_score`` (None
        without references), ``returns`` and ``lengths`` (per episode).
    """
    check_positive_int(episodes, "episodes")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    run = restore_run(run_dir, deployment)
    policies = evaluate_restored(run, episodes=episodes, stochastic=stochastic, seed=seed)
    scores = score_fn(run.cfg.task, {k: v["return_mean"] for k, v in policies.items()}) \
        if score_fn is not None else None
    for name, summary in policies.items():
        summary["normalized_score"] = None if scores is None else scores.get(name)
    d, c = run.position
    return {"run_dir": str(run.workdir), "kind": run.kind, "task": run.cfg.task,
            "backend": run.cfg.backend, "episode_length": int(run.cfg.episode_length),
            "mode": "stochastic" if stochastic else "deterministic", "episodes": episodes,
            "seed": seed, "checkpoint": {"step": run.step, "deployment": d, "chunk": c},
            "skipped_checkpoints": list(run.skipped), "policies": policies}


def write_json(result: dict, path: str | pathlib.Path) -> pathlib.Path:
    """Writes ``result`` as indented JSON through a temporary file (never half a file)."""
    path = pathlib.Path(path)
    atomic_write(path, json.dumps(result, indent=2) + "\n")
    return path
