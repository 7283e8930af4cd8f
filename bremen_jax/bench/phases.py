"""One benchmark per phase of a BREMEN deployment; each returns a list of result dicts.

Every function takes a :class:`Bench` (the config's static pieces at one matmul precision, the
suite's sizes, the measured matmul peak) and times jitted library functions with
:func:`bremen_jax.bench.common.time_jitted` (compile separate from steady state). A result dict
holds ``name``, ``group``, ``precision``, ``sizes`` (stated), ``flop_formula`` and ``flop_count``
(per call; matmul FLOPs of the MLPs, convention in :mod:`bremen_jax.bench.common`; None where not
meaningful), ``compile_s``, ``median_s``, ``min_s``, ``repeats``, ``warmup``, ``program_bytes``,
``throughput`` and ``throughput_unit``, ``gflops``, ``fraction_of_peak`` (vs the matmul peak
measured at the start of the same run at that precision), ``peak_memory_bytes`` (process
high-water mark after the phase, None on CPU) and ``extra`` (numbers the projection uses).

Groups (``--phases``): ``collection`` (real env, policy actions), ``ensemble`` (``ensemble_fit``:
a whole :meth:`Dynamics.fit` with early stopping disabled; ``ensemble_step``: a ``lax.scan`` of
vmapped Adam steps on fixed minibatches), ``bc``, ``trpo`` (``imagined_rollout`` and one TRPO
iteration split into advantages / gradient / FVP+CG / line search / baseline refit, then
``trpo_update`` and the whole ``trpo_iteration``), ``evaluation`` (deterministic real episodes)
and ``deployment`` (:meth:`~bremen_jax.algo.schedule.Schedule.deployment`, one call, no
warm-up).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from bremen_jax.algo import baseline as baseline_lib
from bremen_jax.algo import trpo as trpo_lib
from bremen_jax.algo.bc import make_bc
from bremen_jax.algo.natural_gradient import ROW_CHUNK, linearize_rows, row_chunked
from bremen_jax.algo.phases import Phases, RunState
from bremen_jax.algo.schedule import Schedule
from bremen_jax.bench.common import (
    Timing,
    fvp_flops,
    mlp_forward_flops,
    mlp_grad_flops,
    peak_memory_bytes,
    time_jitted,
)
from bremen_jax.config import HParams, StaticConfig
from bremen_jax.envs.acting import make_collector, make_evaluator
from bremen_jax.models.dynamics import make_dynamics
from bremen_jax.models.policy import dist_net
from bremen_jax.types import Transition


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Per-suite sizes of the phases that are not timed at the config's full size.

    Attributes:
        collect_steps: steps per env of the collection call (the config's env count is used).
        fit_rows: synthetic rows of the whole-fit call (85% train / 15% validation).
        fit_epochs: epochs of the whole-fit call (early stopping disabled).
        fit_steps: minibatch steps per call of the step scan.
        bc_steps: Adam steps of the BC call; bc_rows: synthetic rows it samples from.
        repeats: timed calls after the warm-up call (the deployment always runs once).
    """

    collect_steps: int
    fit_rows: int
    fit_epochs: int
    fit_steps: int
    bc_steps: int
    bc_rows: int
    repeats: int = 3


@dataclasses.dataclass(frozen=True, eq=False)
class Bench:
    """What every phase benchmark needs: the config at one precision and the measured peak."""

    static: StaticConfig
    hp: HParams
    phases: Phases
    state: RunState          # phases.init(key): random ensemble, normc policy
    sizes: Sizes
    precision: str
    peak_flops: float | None

    @property
    def obs_act(self) -> tuple[int, int]:
        return self.phases.task.obs_size, self.phases.task.action_size

    @property
    def dyn_sizes(self) -> tuple[int, ...]:
        o, a = self.obs_act
        return (o + a, *self.static.dynamics.hidden_sizes, o)

    @property
    def pol_sizes(self) -> tuple[int, ...]:
        o, a = self.obs_act
        return (o, *self.static.policy.hidden_sizes, 2 * a)


def make_result(b: Bench, name: str, group: str, timing: Timing, sizes: dict, work: float,
                unit: str, flops: float | None = None, formula: str | None = None,
                extra: dict | None = None) -> dict:
    """A phase result; ``work`` is per call (``throughput = work / median_s``)."""
    gflops = None if flops is None else flops / timing.median_s / 1e9
    frac = None if flops is None or not b.peak_flops else flops / timing.median_s / b.peak_flops
    return {"name": name, "group": group, "precision": b.precision, "sizes": sizes,
            "flop_formula": formula, "flop_count": flops, **timing.as_dict(),
            "throughput": work / timing.median_s, "throughput_unit": unit,
            "gflops": gflops, "fraction_of_peak": frac,
            "peak_memory_bytes": peak_memory_bytes(), "extra": extra or {}}


def synthetic_transitions(rows: int, obs_dim: int, act_dim: int, seed: int = 0) -> Transition:
    """A random linear-plus-tanh system; only shapes and dtypes matter for timing."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(rows, act_dim)).astype(np.float32)
    mix = rng.normal(size=(obs_dim + act_dim, obs_dim)).astype(np.float32) * 0.1
    next_obs = obs + np.tanh(np.concatenate([obs, act], 1) @ mix)
    z = jnp.zeros(rows, jnp.float32)
    return Transition(obs=jnp.asarray(obs), action=jnp.asarray(act), reward=z,
                      next_obs=jnp.asarray(next_obs), done=z, truncation=z)


def fit_validation_passes(epochs: int, eval_every: int) -> int:
    """Validation passes of one fit of ``epochs`` epochs: before training, then after each
    block of epochs ending on a validation epoch or the last one (``[0], [1, k], [k+1, 2k]``...)."""
    if epochs < 1 or eval_every < 1:
        raise ValueError(f"epochs and eval_every must be >= 1, got {epochs}, {eval_every}")
    return 2 + -(-(epochs - 1) // eval_every)


# ------------------------------------------------------------------------------- 1. collection
def bench_collection(b: Bench) -> list[dict]:
    """Real-env collection: ``collect_envs`` envs x ``collect_steps`` steps of policy actions."""
    s, p = b.static, b.phases
    envs, steps = s.deploy.num_envs, min(b.sizes.collect_steps, s.deploy.collect_steps)
    collector = make_collector(p.task, p._collect_policy, envs, steps)
    params = (b.state.learner.policy, jnp.asarray(False), b.hp.imagine.explore_sigma)
    timing, _ = time_jitted(collector, params, jax.random.key(1), repeats=b.sizes.repeats)
    sizes = {"task": s.task, "backend": s.backend, "num_envs": envs, "steps": steps,
             "transitions": envs * steps, "policy": list(s.policy.hidden_sizes)}
    return [make_result(b, "collection", "collection", timing, sizes, envs * steps,
                        "transitions/s", None, "not counted: Brax physics dominates",
                        {"transitions_per_call": envs * steps,
                         "actions": "policy mean + sigma*N(0,1) (deployments 2..K)"})]


# ---------------------------------------------------------------------------- 2. ensemble fit
def bench_ensemble(b: Bench) -> list[dict]:
    """Whole fit (``fit_rows`` x ``fit_epochs``, no early stop) and the minibatch-step kernel."""
    s, z = b.static, b.sizes
    o, a = b.obs_act
    cfg = dataclasses.replace(s.dynamics, max_epochs=z.fit_epochs, patience=10 ** 6)
    dyn = make_dynamics(o, a, cfg)
    E, B = cfg.num_members, cfg.batch_size
    fwd = mlp_forward_flops(b.dyn_sizes)
    data = synthetic_transitions(z.fit_rows, o, a)
    n_train = int(z.fit_rows * (1 - s.dynamics.val_fraction))
    train_mask = jnp.arange(z.fit_rows) < n_train
    state = dyn.init(jax.random.key(0))
    t_fit, (_, m) = time_jitted(dyn.fit, state, data, train_mask, ~train_mask, b.hp.dynamics,
                                jax.random.key(1), repeats=z.repeats)
    n_val = int(m["n_val"])
    batches, per_step = (n_train // B, B) if n_train >= B else (1, n_train)  # as Dynamics.fit
    steps = z.fit_epochs * batches
    passes = fit_validation_passes(z.fit_epochs, cfg.eval_every)
    flops = mlp_grad_flops(b.dyn_sizes) * E * steps * per_step + fwd * E * n_val * passes
    ens = f"{E}x{list(cfg.hidden_sizes)}"
    sizes = {"ensemble": ens, "batch": B, "rows": z.fit_rows, "n_train": n_train,
             "n_val_used": n_val, "epochs": z.fit_epochs, "minibatch_steps": steps}
    fit = make_result(
        b, "ensemble_fit", "ensemble", t_fit, sizes, steps * per_step * E, "member-samples/s",
        flops,
        "3*F*E*epochs*batches*B + F*E*n_val*val_passes, F = forward of one member",
        {"transitions_per_s": steps * per_step / t_fit.median_s, "s_per_minibatch_step":
         t_fit.median_s / steps, "val_passes": passes, "forward_flops_per_sample": fwd})

    step = jax.vmap(dyn._member_step, in_axes=(0, 0, 0, 0, None, None, None, 0))
    x = jax.random.normal(jax.random.key(2), (E, B, o + a))
    y = jax.random.normal(jax.random.key(3), (E, B, o))
    w = jnp.full((B,), 1.0 / B)
    lr, run = b.hp.dynamics.learning_rate, jnp.ones((E,), bool)

    def scan_steps(params, opt_state):
        def body(c, _):
            p_, o_, mse = step(c[0], c[1], x, y, w, lr, 1e-5, run)
            return (p_, o_), mse
        return jax.lax.scan(body, (params, opt_state), None, length=z.fit_steps)

    t_step, _ = time_jitted(scan_steps, state.params, state.opt_state, repeats=z.repeats)
    sizes = {"ensemble": ens, "batch": B, "steps_per_call": z.fit_steps}
    kernel = make_result(
        b, "ensemble_step", "ensemble", t_step, sizes, z.fit_steps * B * E, "member-samples/s",
        mlp_grad_flops(b.dyn_sizes) * E * B * z.fit_steps, "3*F*E*B*steps",
        {"s_per_minibatch_step": t_step.median_s / z.fit_steps})
    return [fit, kernel]


# -------------------------------------------------------------------------- 3. behaviour cloning
def bench_bc(b: Bench) -> list[dict]:
    """``bc_steps`` Adam steps of :meth:`BC.fit` at the config's batch on ``bc_rows`` rows."""
    s, z = b.static, b.sizes
    o, a = b.obs_act
    bc = make_bc(b.phases.policy, dataclasses.replace(s.bc, num_steps=z.bc_steps))
    data = synthetic_transitions(z.bc_rows, o, a)
    mask = jnp.ones((z.bc_rows,), bool)
    timing, _ = time_jitted(bc.fit, bc.init(jax.random.key(0)), data, mask, b.hp.bc,
                            jax.random.key(1), repeats=z.repeats)
    B = s.bc.batch_size
    sizes = {"policy": list(s.policy.hidden_sizes), "batch": B, "steps": z.bc_steps,
             "rows": z.bc_rows}
    return [make_result(b, "bc", "bc", timing, sizes, z.bc_steps, "steps/s",
                        mlp_grad_flops(b.pol_sizes) * B * z.bc_steps, "3*F_pol*B*steps",
                        {"samples_per_s": z.bc_steps * B / timing.median_s,
                         "s_per_step": timing.median_s / z.bc_steps})]


# ------------------------------------------------------------------ 4. imagined rollout and TRPO
def _trpo_batch(batch, adv_std) -> trpo_lib.TRPOBatch:
    """Flat ``[H*B, ...]`` rows as :func:`~bremen_jax.algo.trpo.trpo_step` sees them."""
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731  [H, B, ...] -> [H*B, ...]
    return trpo_lib.prepare_batch(flat(batch.obs), flat(batch.action), flat(adv_std),
                                  flat(batch.mask))


def _dist_fn(norm, chunk=ROW_CHUNK):
    """The policy as :func:`~bremen_jax.algo.trpo.trpo_step` evaluates it (row chunks)."""
    return row_chunked(lambda n, x: dist_net(n, norm, x), chunk)


def trpo_gradient(net, norm, data: trpo_lib.TRPOBatch):
    """Stages ``natural_gradient.linearize_rows`` + ``trpo.linearized_gradient``."""
    lin = linearize_rows(_dist_fn(norm, None), net, data.obs)
    return trpo_lib.linearized_gradient(lin, data)[1:]


def trpo_fvp_cg(cfg, net, norm, data: trpo_lib.TRPOBatch, grad, hp_trpo):
    """Stages ``linearize_rows`` + ``trpo.natural_step`` (FVPs, CG, step scaling)."""
    lin = linearize_rows(_dist_fn(norm, None), net, data.obs)
    old = trpo_lib.linearized_gradient(lin, data)[0]
    return trpo_lib.natural_step(cfg, hp_trpo, _dist_fn(norm), net, data, old, grad, lin)[:2]


def trpo_line_search(cfg, net, norm, data: trpo_lib.TRPOBatch, step, expected, loss0, hp_trpo):
    """Stages ``old_distribution`` + :func:`~bremen_jax.algo.trpo.line_search` (the end of
    ``trpo_step``)."""
    old = trpo_lib.old_distribution(_dist_fn(norm), net, data)
    loss_fn, kl_fn = trpo_lib.objectives(_dist_fn(norm), data, old)
    return trpo_lib.line_search(loss_fn, kl_fn, net, step, expected, cfg, hp_trpo,
                                loss_before=loss0,
                                eval_fn=trpo_lib.objective_pair(_dist_fn(norm), data, old))


def _bench_step_stages(b: Bench, add: Callable, policy, data: trpo_lib.TRPOBatch
                       ) -> tuple[int, str]:
    """Times the stages of ``trpo_step`` one by one (gradient, FVP+CG, line search) through
    ``add(name, timing, flops, formula, extra=None)``; returns the FLOP count and formula of the
    whole update (the stages, with the old policy evaluated once)."""
    t, hp, rep = b.static.trpo, b.hp, b.sizes.repeats
    N, F = b.static.imagine.batch_size, mlp_forward_flops(b.pol_sizes)
    net, norm = policy.net, policy.obs_norm
    t_grad, (loss0, grad) = time_jitted(trpo_gradient, net, norm, data, repeats=rep)
    add("trpo_gradient", t_grad, 3 * N * F,
        "N*(F_pol + 2*F_pol): one linearised pass (old policy) + its transpose (gradient)")
    hvp = fvp_flops(t.fvp, b.pol_sizes)
    k_fvp = 6 if t.fvp == "hessian" else 4
    t_cg, (step, expected) = time_jitted(functools.partial(trpo_fvp_cg, t), net, norm, data,
                                         grad, hp.trpo, repeats=rep)
    n_fvp = t.cg_iters + (0 if t.shs_from_cg else 1)
    n_lin = 1 if t.fvp == "gauss_newton" else 2  # hessian: linearize(grad KL) of its own
    add("trpo_fvp_cg", t_cg, N * (n_lin * F + n_fvp * hvp),
        f"N*({n_lin}*F_pol + {n_fvp}*{k_fvp}*F_pol): linearised pass (old policy), {n_fvp} FVPs"
        f" ({t.fvp}; x'Fx {'from CG' if t.shs_from_cg else 'by one more product'})")
    t_ls, (_, ls_m) = time_jitted(functools.partial(trpo_line_search, t), net, norm, data,
                                  step, expected, loss0, hp.trpo, repeats=rep)
    # candidates evaluated: every one (parallel), else up to the accepted one
    n_cand = t.ls_steps
    if t.line_search == "sequential" and float(ls_m["ls_accepted"]) > 0:
        n_cand = int(ls_m["ls_index"]) + 1
    add("trpo_line_search", t_ls, N * F * (1 + n_cand),
        f"N*F_pol*(1 + candidates): old policy + {n_cand} candidate(s) evaluated "
        f"({t.line_search})", {"candidates_evaluated": n_cand})
    return (N * ((2 + n_lin) * F + n_fvp * hvp + n_cand * F),
            f"N*F_pol*({2 + n_lin} + candidates) + N*{n_fvp}*{k_fvp}*F_pol: linearised pass, "
            "its transpose (gradient), FVPs, line search (+ baseline refit, not counted)")


def bench_trpo(b: Bench) -> list[dict]:
    """Imagined rollout, the parts of one TRPO iteration, the update and the whole iteration."""
    s, opt, hp, rep = b.static, b.phases.opt, b.hp, b.sizes.repeats
    learner, dyn = b.state.learner, b.state.dynamics
    key = jax.random.key(1)
    N, E, t = s.imagine.batch_size, s.dynamics.num_members, s.trpo
    F, Fd = mlp_forward_flops(b.pol_sizes), mlp_forward_flops(b.dyn_sizes)
    per_step = s.imagine.member_sampling == "per_step"
    sizes = {"imagined_transitions": N, "horizon": s.imagine.horizon,
             "rollouts": s.imagine.num_rollouts,
             "ensemble": f"{E}x{list(s.dynamics.hidden_sizes)}",
             "policy": list(s.policy.hidden_sizes), "baseline": s.trpo.baseline,
             "cg_iters": t.cg_iters, "ls_steps": t.ls_steps, "fvp": t.fvp,
             "line_search": t.line_search}
    out, times = [], {}

    def add(name, timing, flops, formula, extra=None):
        times[name] = timing.median_s
        out.append(make_result(b, name, "trpo", timing, sizes, N, "transitions/s", flops,
                               formula, extra))

    t_roll, batch = time_jitted(opt.imagine, learner, dyn, hp, key, repeats=rep)
    add("imagined_rollout", t_roll, N * ((Fd if per_step else E * Fd) + F),
        "N*(F_dyn + F_pol), one member per step" if per_step else "N*(E*F_dyn + F_pol)")
    t_adv, (adv_std, targets, obs_hat, _) = time_jitted(opt.advantages, learner, batch, hp,
                                                        repeats=rep)
    add("trpo_advantages", t_adv, 2 * N * F, "2*N*F_pol (target and behaviour policy)")
    upd_flops, upd_formula = _bench_step_stages(b, add, learner.policy,
                                                _trpo_batch(batch, adv_std))
    t_base, _ = time_jitted(baseline_lib.refit_linear, learner.baseline, obs_hat, batch.t,
                            targets, batch.mask, repeats=rep)  # end of PolicyOptimizer.update
    add("trpo_baseline", t_base, None, "not counted (no MLP): QR of [N, 2*obs+5]")
    t_upd, _ = time_jitted(opt.update, learner, batch, adv_std, targets, obs_hat, hp, key,
                           repeats=rep)
    add("trpo_update", t_upd, upd_flops, upd_formula)
    it_flops = out[0]["flop_count"] + out[1]["flop_count"] + upd_flops
    t_it, _ = time_jitted(opt.iteration, learner, dyn, hp, key, repeats=rep)
    parts = ("imagined_rollout", "trpo_advantages", "trpo_gradient", "trpo_fvp_cg",
             "trpo_line_search", "trpo_baseline")
    breakdown = {k: times[k] for k in parts}
    breakdown["rest"] = t_it.median_s - sum(breakdown.values())
    add("trpo_iteration", t_it, it_flops, "rollout + advantages + update",
        {"breakdown_s": breakdown, "iterations_per_s": 1.0 / t_it.median_s})
    return out


# ------------------------------------------------------------------------------ 5. evaluation
def bench_evaluation(b: Bench) -> list[dict]:
    """One evaluation: ``eval_episodes`` deterministic real episodes (``episode_length`` max)."""
    s, p = b.static, b.phases
    evaluator = make_evaluator(p.task, p.policy.act_deterministic, s.eval.num_episodes)
    timing, m = time_jitted(evaluator, b.state.learner.policy, jax.random.key(1),
                            repeats=b.sizes.repeats)
    env_steps = float(m["length_mean"]) * s.eval.num_episodes
    sizes = {"task": s.task, "backend": s.backend, "episodes": s.eval.num_episodes,
             "episode_length": s.episode_length}
    return [make_result(b, "evaluation", "evaluation", timing, sizes, env_steps, "env steps/s",
                        None, "not counted: Brax physics dominates",
                        {"env_steps_per_call": env_steps})]


# ------------------------------------------------------------------------------ 6. deployment
def deployment_step(phases: Phases, state: RunState, hp: HParams):
    """One deployment of the online schedule (:meth:`Schedule.deployment`); the tests swap this
    for a stand-in."""
    return Schedule(phases).deployment(state, hp)


def bench_deployment(b: Bench) -> list[dict]:
    """A real deployment from a fresh state (deployment 1: random collection)."""
    s = b.static
    fn = functools.partial(deployment_step, b.phases)
    timing, (_, m) = time_jitted(fn, b.state, b.hp, repeats=1, warmup=0)
    pre = jax.device_get(m["preamble"])
    n_active = int(b.hp.dynamics.num_active)
    epochs = int(np.max(np.asarray(pre["dynamics/epochs"])[:n_active]))
    evals = 1 + s.trpo.iterations // s.trpo.chunk
    sizes = {"config_deploy_batch": s.deploy.batch_size, "num_envs": s.deploy.num_envs,
             "trpo_iterations": s.trpo.iterations, "imagined_batch": s.imagine.batch_size,
             "bc_steps": s.bc.num_steps, "evaluations": evals,
             "ensemble": f"{s.dynamics.num_members}x{list(s.dynamics.hidden_sizes)}"}
    return [make_result(b, "deployment", "deployment", timing, sizes, s.deploy.batch_size,
                        "real transitions/s", None, None,
                        {"fit_epochs_run": epochs,
                         "bc_init_return": float(pre["bc_eval/return_mean"]),
                         "final_return": float(np.asarray(m["eval"]["eval/return_mean"])[-1])})]


GROUPS: dict[str, Callable[[Bench], list[dict]]] = {
    "collection": bench_collection, "ensemble": bench_ensemble, "bc": bench_bc,
    "trpo": bench_trpo, "evaluation": bench_evaluation, "deployment": bench_deployment,
}
ALIASES = {"ensemble_fit": "ensemble", "dynamics": "ensemble", "rollout": "trpo",
           "imagined_rollout": "trpo", "trpo_iteration": "trpo", "eval": "evaluation"}


def resolve_groups(names: list[str]) -> list[str]:
    """Group names (aliases allowed) in the canonical order; ValueError names unknown ones."""
    wanted = set()
    for n in names:
        g = ALIASES.get(n, n)
        if g not in GROUPS:
            raise ValueError(f"unknown phase {n!r}; expected some of {sorted(GROUPS)} "
                             f"(aliases {sorted(ALIASES)})")
        wanted.add(g)
    return [g for g in GROUPS if g in wanted]


def make_bench(static: StaticConfig, hp: HParams, phases: Phases, sizes: Sizes, precision: str,
               peak_flops: float | None, key: Any = None) -> Bench:
    state = jax.jit(phases.init)(jax.random.key(0) if key is None else key)
    return Bench(static=static, hp=hp, phases=phases, state=state, sizes=sizes,
                 precision=precision, peak_flops=peak_flops)
