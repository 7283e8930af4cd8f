"""Brax SAC and PPO on a BREMEN task, evaluated by the package's deterministic evaluator.

Both baselines train on ``task.env`` (a :class:`bremen_jax.envs.TaskEnv`: BREMEN's reward and
termination, actions clipped to [-1, 1]). Brax's train functions add their usual training wrappers
(``brax.envs.training.wrap``: ``VmapWrapper`` -> ``EpisodeWrapper(episode_length)`` ->
``AutoResetWrapper``), so an episode ends at BREMEN's termination or at ``task.episode_length``
steps (flagged as truncation, which SAC and PPO bootstrap through), as in BREMEN's collector. Their
policies are tanh-squashed Gaussians, so actions lie in [-1, 1] before the TaskEnv's clip.

Evaluation: every policy is scored with :func:`bremen_jax.envs.acting.make_evaluator` (one episode
per env until termination or the time limit), with brax's deterministic policy
(``make_inference_fn(networks)(params, deterministic=True)``: ``tanh`` of the Gaussian mean).

Parameters along training (brax 0.14.2): PPO's ``train`` offers ``policy_params_fn(step,
make_policy, params)``; SAC's offers only ``progress_fn(step, metrics)`` (no parameters). For SAC
the harness substitutes brax's ``acting.Evaluator`` while ``sac.train`` runs with
:class:`_ParamsTap`, which receives the parameters SAC would evaluate and hands them to our
evaluator instead (brax's own evaluation is not run, so it costs nothing).

Sample counts: SAC reports after its prefill (``min_replay_size`` steps of the initial policy,
no update) and then every ``gcd(grid, min_replay_size)`` steps; PPO every ``grid`` steps (one
training step collects ``batch_size * unroll_length * num_minibatches`` steps, which must divide
the grid). At every grid sample count ``k * grid`` the policy evaluated is the one the algorithm
had after exactly ``k * grid`` real steps (for SAC before its first update: the initial policy).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

# compat: jax.device_put_replicated for brax's train functions (removed from jax 0.10)
from bremen_jax.datasets import compat

SAC_DEFAULTS = {"learning_rate": 3e-4, "reward_scaling": 1.0, "updates_per_step": 1,
                "discounting": 0.99, "batch_size": 256, "hidden_sizes": (256, 256),
                "tau": 0.005, "min_replay_size": 1000, "num_envs": 1,
                "normalize_observations": True}
PPO_DEFAULTS = {"learning_rate": 3e-4, "entropy_cost": 1e-3, "discounting": 0.99,
                "reward_scaling": 1.0, "unroll_length": 10, "num_minibatches": 8,
                "batch_size": None, "num_updates_per_batch": 4, "num_envs": 8,
                "clipping_epsilon": 0.2, "gae_lambda": 0.95, "normalize_observations": True,
                "policy_hidden_sizes": (64, 64), "value_hidden_sizes": (256, 256)}
# The tuning grids of ``--tune`` (every combination; the best mean final return is reported).
SAC_GRID = {"learning_rate": [3e-4, 1e-3], "reward_scaling": [1.0, 5.0],
            "updates_per_step": [1, 2]}
# PPO's third axis is the epochs per batch, not the unroll length: a longer unroll changes the
# samples per update, which must divide the evaluation grid (20 does not at the cpu protocol's
# halfcheetah sizes, 16 x 10 x 4 = 640 steps per update).
PPO_GRID = {"learning_rate": [3e-4, 1e-3], "entropy_cost": [1e-3, 1e-2],
            "num_updates_per_batch": [4, 8]}


def grid_points(grid: dict) -> list[dict]:
    """Every combination of a ``field -> [values]`` grid, in order."""
    import itertools
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def make_eval_fn(task, make_networks: Callable, num_episodes: int) -> Callable:
    """``evaluate(params, key) -> return_mean`` (jitted once per task and network config): the
    package's evaluator on brax's deterministic policy of ``make_networks()``."""
    from bremen_jax.envs.acting import make_evaluator

    networks, make_inference = make_networks()
    make_policy = make_inference(networks)

    def policy_fn(params, obs, key):
        return make_policy(params, deterministic=True)(obs, key)[0]

    evaluate = jax.jit(make_evaluator(task, policy_fn, num_episodes))
    # Host copies: brax hands over parameters whose sharding names its own mesh axes ('devices'
    # before training, 'i' inside it), and each new annotation would recompile the evaluator.
    return lambda params, key: float(evaluate(jax.device_get(params), key)["return_mean"])


class _ParamsTap:
    """Stands in for ``brax.training.acting.Evaluator`` inside ``sac.train``: each
    ``run_evaluation(params, ...)`` call passes the parameters to ``on_params``."""

    on_params: Callable[[Any], None] = None

    def __init__(self, *args, **kwargs):
        del args, kwargs

    def run_evaluation(self, policy_params, training_metrics, aggregate_episodes=True):
        del training_metrics, aggregate_episodes
        type(self).on_params(policy_params)
        return {}


@contextlib.contextmanager
def _tap_sac_params(on_params: Callable[[Any], None]):
    from brax.training import acting

    real = acting.Evaluator
    tap = type("ParamsTap", (_ParamsTap,), {"on_params": staticmethod(on_params)})
    acting.Evaluator = tap
    try:
        yield
    finally:
        acting.Evaluator = real


def _normalizer(on: bool):
    from brax.training import types
    from brax.training.acme import running_statistics
    return running_statistics.normalize if on else types.identity_observation_preprocessor


def sac_factory(cfg: dict) -> Callable:
    """Brax's ``network_factory`` for SAC with ``cfg``'s hidden sizes (what ``sac.train`` and the
    evaluator both build)."""
    from brax.training.agents.sac import networks as sac_nets
    return functools.partial(sac_nets.make_sac_networks,
                             hidden_layer_sizes=tuple(cfg["hidden_sizes"]))


def ppo_factory(cfg: dict) -> Callable:
    """Brax's ``network_factory`` for PPO with ``cfg``'s policy and value sizes."""
    from brax.training.agents.ppo import networks as ppo_nets
    return functools.partial(ppo_nets.make_ppo_networks,
                             policy_hidden_layer_sizes=tuple(cfg["policy_hidden_sizes"]),
                             value_hidden_layer_sizes=tuple(cfg["value_hidden_sizes"]))


def _networks(factory: Callable, make_inference_fn: Callable, task, cfg: dict) -> Callable:
    """``() -> (networks, make_inference_fn)`` from a network factory, for ``task``'s sizes."""
    def make():
        return (factory(observation_size=task.obs_size, action_size=task.action_size,
                        preprocess_observations_fn=_normalizer(cfg["normalize_observations"])),
                make_inference_fn)
    return make


def sac_networks(task, cfg: dict) -> Callable:
    """``() -> (networks, make_inference_fn)`` for SAC with ``cfg``'s sizes."""
    from brax.training.agents.sac import networks as sac_nets
    return _networks(sac_factory(cfg), sac_nets.make_inference_fn, task, cfg)


def ppo_networks(task, cfg: dict) -> Callable:
    """``() -> (networks, make_inference_fn)`` for PPO with ``cfg``'s sizes."""
    from brax.training.agents.ppo import networks as ppo_nets
    return _networks(ppo_factory(cfg), ppo_nets.make_inference_fn, task, cfg)


def sac_schedule(grid: int, total: int, cfg: dict) -> tuple[int, int]:
    """``(report_every, num_evals)`` so that SAC reports at every multiple of ``grid`` after its
    prefill. Raises ValueError when the sizes do not line up."""
    prefill, n = int(cfg["min_replay_size"]), int(cfg["num_envs"])
    every = math.gcd(grid, prefill) if prefill else grid
    if prefill >= total or every % n or prefill % n or total % grid:
        raise ValueError(f"SAC: min_replay_size {prefill} and num_envs {n} must divide into the "
                         f"evaluation grid {grid} (total {total} > min_replay_size)")
    return every, (total - prefill) // every + 1


def ppo_batch_size(grid: int, cfg: dict) -> int:
    """PPO's ``batch_size``: ``cfg['batch_size']`` or the largest ``b <= 64`` with ``b * unroll *
    minibatches`` dividing ``grid`` and ``num_envs`` dividing ``b * minibatches``."""
    u, m, n = cfg["unroll_length"], cfg["num_minibatches"], cfg["num_envs"]
    options = [cfg["batch_size"]] if cfg["batch_size"] else range(64, 0, -1)
    for b in options:
        if grid % (b * u * m) == 0 and (b * m) % n == 0:
            return int(b)
    raise ValueError(f"PPO: no batch_size makes batch_size x unroll_length {u} x num_minibatches "
                     f"{m} divide the evaluation grid {grid} (with num_envs {n} dividing "
                     f"batch_size x num_minibatches); choose other PPO sizes")


def _align(grid: int, total: int, evals: dict[int, Any]) -> list:
    """Values at ``grid, 2*grid, ..., total``: the latest evaluation at or before each."""
    steps = sorted(evals)
    out = []
    for s in range(grid, total + 1, grid):
        out.append(evals[max(t for t in steps if t <= s)])
    return out


def _sets_time_out(env) -> bool:
    """Whether ``env`` reports ``info['time_out']`` (Brax's inverted_pendulum does, its locomotion
    envs do not): PPO's ``bootstrap_on_timeout`` reads it. Without it PPO still bootstraps at
    truncation through the episode wrapper's ``truncation``."""
    import jax

    return "time_out" in jax.eval_shape(env.reset, jax.random.key(0)).info


def run_sac(task, seed: int, grid: int, total: int, cfg: dict, evaluate: Callable,
            eval_key) -> dict:
    """One SAC run: ``{"returns": [per grid point], "steps": [...], "deployments_at": [...],
    "wall_s"}``. ``evaluate(params, key) -> float`` scores a policy."""
    from brax.training.agents.sac import train as sac_train

    cfg = {**SAC_DEFAULTS, **cfg}
    every, num_evals = sac_schedule(grid, total, cfg)
    prefill, n = int(cfg["min_replay_size"]), int(cfg["num_envs"])
    on_grid = set(range(grid, total + 1, grid)) | {0}
    evals, calls = {}, []

    def on_params(params):
        step = 0 if not calls else prefill + len(calls) * every
        calls.append(step)
        if step in on_grid or step == prefill:
            evals[step] = evaluate(params, eval_key)

    factory = sac_factory(cfg)
    t0 = time.perf_counter()
    with _tap_sac_params(on_params), compat.brax_jax_compat():
        sac_train.train(
            task.env, num_timesteps=total, episode_length=task.episode_length, num_envs=n,
            num_evals=num_evals, learning_rate=cfg["learning_rate"],
            discounting=cfg["discounting"], seed=seed, batch_size=cfg["batch_size"],
            normalize_observations=cfg["normalize_observations"],
            reward_scaling=cfg["reward_scaling"], tau=cfg["tau"], min_replay_size=prefill,
            max_replay_size=total, grad_updates_per_step=int(cfg["updates_per_step"] * n),
            deterministic_eval=True, network_factory=factory, num_eval_envs=1)
    wall = time.perf_counter() - t0
    evals.setdefault(prefill, evals[0])  # no update during the prefill: the initial policy
    samples = list(range(grid, total + 1, grid))
    # A new policy acts at every actor step after the prefill (each follows an update).
    deps = [1 + max(0, s - prefill) // n for s in samples]
    return {"returns": _align(grid, total, evals), "steps": samples, "deployments_at": deps,
            "wall_s": wall}


def run_ppo(task, seed: int, grid: int, total: int, cfg: dict, evaluate: Callable,
            eval_key) -> dict:
    """One PPO run (see :func:`run_sac`); evaluated through ``policy_params_fn``."""
    from brax.training.agents.ppo import train as ppo_train

    cfg = {**PPO_DEFAULTS, **cfg}
    b = ppo_batch_size(grid, cfg)
    per_step = b * cfg["unroll_length"] * cfg["num_minibatches"]
    if total % grid:
        raise ValueError(f"PPO: total samples {total} must be a multiple of the grid {grid}")
    evals = {}

    def policy_params_fn(step, make_policy, params):
        del make_policy
        evals[int(step)] = evaluate(params[:2], eval_key)

    factory = ppo_factory(cfg)
    t0 = time.perf_counter()
    with compat.brax_jax_compat():
        ppo_train.train(
            task.env, num_timesteps=total, episode_length=task.episode_length,
            num_envs=cfg["num_envs"], num_evals=total // grid + 1, run_evals=False,
            learning_rate=cfg["learning_rate"], entropy_cost=cfg["entropy_cost"],
            discounting=cfg["discounting"], reward_scaling=cfg["reward_scaling"],
            unroll_length=cfg["unroll_length"], batch_size=b,
            num_minibatches=cfg["num_minibatches"],
            num_updates_per_batch=cfg["num_updates_per_batch"],
            clipping_epsilon=cfg["clipping_epsilon"], gae_lambda=cfg["gae_lambda"],
            normalize_observations=cfg["normalize_observations"],
            bootstrap_on_timeout=_sets_time_out(task.env),
            seed=seed, network_factory=factory, policy_params_fn=policy_params_fn)
    wall = time.perf_counter() - t0
    samples = list(range(grid, total + 1, grid))
    missing = [s for s in samples if s not in evals]
    if missing:
        raise RuntimeError(f"PPO reported no parameters at sample counts {missing} "
                           f"(got {sorted(evals)})")
    # One deployment per training step: each collects its batch with a new policy.
    return {"returns": [evals[s] for s in samples], "steps": samples,
            "deployments_at": [s // per_step for s in samples], "wall_s": wall,
            "batch_size": b}


RUNNERS = {"sac": (run_sac, sac_networks, SAC_DEFAULTS, SAC_GRID),
           "ppo": (run_ppo, ppo_networks, PPO_DEFAULTS, PPO_GRID)}


def memory_maps() -> int | None:
    """The process's memory mappings (lines of ``/proc/self/maps``; None off Linux): compiled CPU
    programs hold code mappings, and LLVM fails with "Cannot allocate memory" once they reach
    ``vm.max_map_count``, so the tuning log shows this count after each run."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def run_baseline(algo: str, task, seeds, grid: int, total: int, cfg: dict, num_episodes: int,
                 log=print) -> dict:
    """All seeds of one baseline config: ``{"returns": [[per seed] per grid point], "wall_s":
    [per seed], "deployments_at": [...], "config": {...}}``."""
    run, nets, defaults, _ = RUNNERS[algo]
    full = {**defaults, **cfg}
    evaluate = make_eval_fn(task, nets(task, full), num_episodes)
    per_seed = []
    for seed in seeds:
        r = run(task, int(seed), grid, total, full, evaluate,
                jax.random.fold_in(jax.random.key(10_007), int(seed)))
        log(f"  {algo} seed {seed}: {[round(x, 1) for x in r['returns']]} ({r['wall_s']:.0f} s, "
            f"{memory_maps()} memory maps)")
        per_seed.append(r)
    if "batch_size" in per_seed[0]:
        full = {**full, "batch_size": per_seed[0]["batch_size"]}
    returns = np.asarray([r["returns"] for r in per_seed], np.float64).T  # [samples, seeds]
    return {"returns": returns.tolist(), "wall_s": [round(r["wall_s"], 2) for r in per_seed],
            "deployments_at": per_seed[0]["deployments_at"], "config": full}


# Each algorithm's size check (raises ValueError naming the sizes), run on every grid point first.
_SIZE_CHECKS = {"sac": sac_schedule,
                "ppo": lambda grid, total, cfg: ppo_batch_size(grid, cfg)}

# Integer settings whose default is None ("derive it"), which a grid may still set.
_INT_OR_AUTO = {"ppo": ("batch_size",)}


def parse_grid(specs, algorithms=("sac", "ppo")) -> dict[str, dict]:
    """``["sac.reward_scaling=1,5", ...]`` -> ``{"sac": {"reward_scaling": [1.0, 5.0]}}``: axes
    that replace those of the built-in grid (:data:`SAC_GRID`, :data:`PPO_GRID`); a field may be
    any of the algorithm's settings (:data:`SAC_DEFAULTS`, :data:`PPO_DEFAULTS`), values take the
    type of its default. Raises ValueError naming what was wrong."""
    out: dict[str, dict] = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        algo, _, field = name.partition(".")
        if algo not in algorithms or not field or not values:
            raise ValueError(f"--grid {spec!r}: expected ALGO.FIELD=V1[,V2...] with ALGO one of "
                             f"{', '.join(algorithms)}")
        numeric = {k: type(v) for k, v in RUNNERS[algo][2].items()
                   if type(v) in (int, float)}  # not sizes (tuples) or flags
        numeric.update({k: int for k in _INT_OR_AUTO.get(algo, ())})
        if field not in numeric:
            raise ValueError(f"--grid {spec!r}: {algo} has no numeric setting {field!r}; "
                             f"expected one of {', '.join(numeric)}")
        kind = numeric[field]
        try:
            out.setdefault(algo, {})[field] = [kind(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--grid {spec!r}: {field} takes {kind.__name__} values") from None
    return out


def tune_baseline(algo: str, task, seeds, grid: int, total: int, base: dict, num_episodes: int,
                  tune: bool, log=print, axes: dict | None = None,
                  on_point: Callable[[dict, dict], None] | None = None) -> dict:
    """:func:`run_baseline` at ``base`` or, with ``tune``, at every point of the algorithm's grid
    (its built-in axes, those in ``axes`` replaced: :func:`parse_grid`); returns the point with
    the best mean final return, with every point's result in ``config["tuning"]``.
    ``on_point(point, result)`` sees each point as it finishes (the driver keeps it on disk: a
    process that dies mid-grid keeps the points before)."""
    points = grid_points({**RUNNERS[algo][3], **(axes or {})}) if tune else [{}]
    for p in points:  # a point whose sizes do not fit the grid fails now, not hours in
        _SIZE_CHECKS[algo](grid, total, {**RUNNERS[algo][2], **base, **p})
    results = []
    for p in points:
        if tune:
            log(f"  {algo} tuning point {p}")
        results.append((p, run_baseline(algo, task, seeds, grid, total, {**base, **p},
                                        num_episodes, log)))
        if on_point is not None:
            on_point(p, results[-1][1])
        # Every run compiles fresh Brax programs (new closures); on CPU their code mappings
        # accumulate until LLVM hits vm.max_map_count ("Cannot allocate memory", 13 PPO runs in
        # on 2026-12-04). Dropping the compiled programs between points releases them; the next
        # point compiles its own programs anyway.
        jax.clear_caches()
        if tune:
            log(f"  {algo} tuning point {p}: final return "
                f"{np.mean(results[-1][1]['returns'][-1]):.1f} +- "
                f"{np.std(results[-1][1]['returns'][-1], ddof=1) if len(seeds) > 1 else 0:.1f} "
                f"({memory_maps()} memory maps after dropping the compiled programs)")
    best_p, best = max(results, key=lambda pr: float(np.mean(pr[1]["returns"][-1])))
    if tune:
        best["config"]["tuning"] = [{"point": p, "final_mean": float(np.mean(r["returns"][-1])),
                                     "wall_s": sum(r["wall_s"])} for p, r in results]
        best["config"]["tuned_best"] = best_p
        best["wall_s_tuning_total"] = round(sum(sum(r["wall_s"]) for _, r in results), 1)
    return best
