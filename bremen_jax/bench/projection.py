"""Projected wall time of a whole recursive BREMEN run from measured phase times (issue 7, item 3).

For the paper's HalfCheetah run (reference/bremen-algorithm.md §8-§9; ``bremen_jax/configs/
halfcheetah.py``) the counts are:

* **collection**: K = 5 deployments x 200,000 real steps (§8; deployment 1 uniform random, then
  the policy with mean + N(0, 0.1^2)); measured on the config's envs for fewer steps, scaled
  linearly in steps.
* **ensemble fit**: at deployment d the ensemble is fine-tuned on the cumulative training split,
  d x 170,000 rows (85% of every 200K batch, §2), in minibatches of 1000 for up to 200 epochs
  (§2/§9; early stopping with patience 20 usually ends sooner, so 200 epochs is an upper bound;
  the lower bound stops at ``patience + 1`` = 21 epochs). The seconds per minibatch step come from
  a whole :meth:`Dynamics.fit` of fewer rows and epochs (validation, shuffles and gathers
  included, amortised per step), scaled linearly in minibatch steps; the per-epoch shuffle of the
  full buffer capacity is not scaled up (a few ms per epoch against ~1e2 s of steps on CPU).
* **behaviour cloning**: 5 x 300,000 Adam steps at batch 256 (§3), scaled from fewer steps.
* **TRPO**: 5 x 2,000 = 10,000 iterations, each on 50,000 imagined transitions (200 rollouts x
  H = 250 through the 5 x 2x1024 ensemble, §5/§8); one iteration is measured at this full size.
* **evaluation**: 5 x (1 + 2000 / 25) calls of 3 deterministic 1000-step episodes (§8; the
  BC-init check and one after every 25 TRPO iterations), measured at full size.
* **compile**: the compile seconds of the phases, paid once per run (approximate: the run
  compiles a scan of 25 iterations rather than one iteration).

The same arithmetic projects any config (e.g. ``quick``) from phases measured at that config's
sizes; :func:`deployment_check` compares one projected deployment with a measured one.
"""

from __future__ import annotations

from typing import Any

from bremen_jax.config import StaticConfig
from bremen_jax.data.buffer import split_sizes

PAPER_HALFCHEETAH = {"task": "halfcheetah", "num_deployments": 5, "deploy_batch": 200_000,
                     "trpo_iterations": 2000, "imagined_batch": 50_000, "horizon": 250,
                     "bc_steps": 300_000, "ensemble": (5, (1024, 1024)), "max_epochs": 200}


def is_paper_halfcheetah(static: StaticConfig) -> bool:
    """True when ``static`` has the paper's HalfCheetah counts and sizes (reference §8-§9)."""
    p = PAPER_HALFCHEETAH
    return (static.task == p["task"] and static.deploy.num_deployments == p["num_deployments"]
            and static.deploy.batch_size == p["deploy_batch"]
            and static.trpo.iterations == p["trpo_iterations"]
            and static.imagine.batch_size == p["imagined_batch"]
            and static.imagine.horizon == p["horizon"]
            and static.bc.num_steps == p["bc_steps"]
            and (static.dynamics.num_members, static.dynamics.hidden_sizes) == p["ensemble"]
            and static.dynamics.max_epochs == p["max_epochs"])


def fit_minibatch_steps(static: StaticConfig, epochs: int, deployments: range | None = None
                        ) -> int:
    """Adam minibatch steps of the ensemble fits: ``sum_d epochs * max(d*n_train // B, 1)``."""
    n_train, _ = split_sizes(static.deploy.batch_size, static.dynamics.val_fraction,
                             static.val_blocks)
    B = static.dynamics.batch_size
    ds = range(1, static.deploy.num_deployments + 1) if deployments is None else deployments
    return sum(epochs * max(d * n_train // B, 1) for d in ds)


def run_counts(static: StaticConfig, fit_epochs: int | None = None) -> dict[str, Any]:
    """How often each phase's unit of work occurs in the whole run of ``static``."""
    K = static.deploy.num_deployments
    epochs = static.dynamics.max_epochs if fit_epochs is None else int(fit_epochs)
    n_train, _ = split_sizes(static.deploy.batch_size, static.dynamics.val_fraction,
                             static.val_blocks)
    return {
        "deployments": K,
        "real_steps": K * static.deploy.batch_size,
        "fit_epochs": epochs,
        "fit_epochs_early_stop": min(static.dynamics.patience + 1, epochs),
        "train_rows_per_deployment": [d * n_train for d in range(1, K + 1)],
        "fit_minibatch_steps": fit_minibatch_steps(static, epochs),
        "bc_steps": K * static.bc.num_steps,
        "trpo_iterations": K * static.trpo.iterations,
        "imagined_transitions": K * static.trpo.iterations * static.imagine.batch_size,
        "evaluations": K * (1 + static.trpo.iterations // static.trpo.chunk),
    }


def _ok(results: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in results if "error" not in r}


def unit_times(results: list[dict]) -> dict[str, dict]:
    """Seconds per unit of work from the phase results: ``{term: {"s", "source", "measured"}}``."""
    by = _ok(results)
    out = {}
    if "collection" in by:
        r = by["collection"]
        out["collection"] = {"s": r["median_s"] / r["extra"]["transitions_per_call"],
                             "source": "collection",
                             "measured": f"{r['sizes']['num_envs']} envs x {r['sizes']['steps']}"
                                         " steps"}
    for name, what in (("ensemble_fit", "whole fit of {rows} rows x {epochs} epochs"),
                       ("ensemble_step", "minibatch-step kernel only (no shuffles/validation)")):
        if name in by and "ensemble_fit" not in out:
            r = by[name]
            out["ensemble_fit"] = {"s": r["extra"]["s_per_minibatch_step"], "source": name,
                                   "measured": what.format(**r["sizes"])}
    if "bc" in by:
        r = by["bc"]
        out["bc"] = {"s": r["extra"]["s_per_step"], "source": "bc",
                     "measured": f"{r['sizes']['steps']} steps at batch {r['sizes']['batch']}"}
    if "trpo_iteration" in by:
        r = by["trpo_iteration"]
        out["trpo"] = {"s": r["median_s"], "source": "trpo_iteration",
                       "measured": f"one iteration, {r['sizes']['imagined_transitions']} imagined"}
    if "evaluation" in by:
        r = by["evaluation"]
        out["evaluation"] = {"s": r["median_s"], "source": "evaluation",
                             "measured": f"{r['sizes']['episodes']} episodes"}
    return out


COMPILED_PHASES = ("collection", "ensemble_fit", "bc", "trpo_iteration", "evaluation")


def project(results: list[dict], static: StaticConfig, fit_epochs: int | None = None
            ) -> dict[str, Any]:
    """Projected seconds of the whole run of ``static`` from one precision's phase results.

    Returns ``{"counts", "terms": [{"term", "count", "unit", "s_per_unit", "seconds",
    "measured", "full_size", "note"}], "total_s", "total_h", "complete", "total_s_fit_early_stop",
    "per_deployment_s" (projected seconds of deployment 1..K without compiling; None if a phase
    is missing), "paper_halfcheetah"}``. A term whose phase was not measured has ``seconds`` None
    and the total is marked incomplete.
    """
    c = run_counts(static, fit_epochs)
    u = unit_times(results)
    by = _ok(results)
    sz = lambda name, key: by.get(name, {}).get("sizes", {}).get(key)  # noqa: E731
    n_train = c["train_rows_per_deployment"][0]
    specs = [
        ("collection", c["real_steps"], "real transitions",
         sz("collection", "transitions") == static.deploy.batch_size,
         f"{c['deployments']} x {static.deploy.batch_size} real steps"),
        ("ensemble_fit", c["fit_minibatch_steps"], "minibatch steps", False,
         f"{c['fit_epochs']} epochs (max_epochs; reference §2/§9) on d x {n_train} train rows at "
         f"deployment d = 1..{c['deployments']}, batch {static.dynamics.batch_size}"),
        ("bc", c["bc_steps"], "Adam steps", sz("bc", "steps") == static.bc.num_steps,
         f"{c['deployments']} x {static.bc.num_steps} steps at batch {static.bc.batch_size}"),
        ("trpo", c["trpo_iterations"], "iterations",
         sz("trpo_iteration", "imagined_transitions") == static.imagine.batch_size,
         f"{c['deployments']} x {static.trpo.iterations} iterations x {static.imagine.batch_size} "
         f"imagined transitions (H={static.imagine.horizon})"),
        ("evaluation", c["evaluations"], "evaluations", "evaluation" in by,
         f"{c['deployments']} x (1 + {static.trpo.iterations // static.trpo.chunk}) x "
         f"{static.eval.num_episodes} episodes"),
    ]
    terms = []
    for term, count, unit, full, note in specs:
        t = u.get(term)
        terms.append({"term": term, "count": count, "unit": unit,
                      "s_per_unit": None if t is None else t["s"],
                      "seconds": None if t is None else t["s"] * count,
                      "measured": "not measured" if t is None else t["measured"],
                      "full_size": bool(full) if t is not None else None, "note": note})
    compile_s = sum(by[n]["compile_s"] for n in COMPILED_PHASES if n in by)
    terms.append({"term": "compile", "count": 1, "unit": "run", "s_per_unit": compile_s,
                  "seconds": compile_s, "measured": "sum of the phases' compile times",
                  "full_size": True, "note": "approximate: paid once per run"})
    complete = all(t["seconds"] is not None for t in terms) and all(
        n in by for n in COMPILED_PHASES)
    total = sum(t["seconds"] for t in terms if t["seconds"] is not None)
    fit = next(t for t in terms if t["term"] == "ensemble_fit")
    low = total
    if fit["seconds"] is not None:
        low = total - fit["seconds"] + fit["s_per_unit"] * fit_minibatch_steps(
            static, c["fit_epochs_early_stop"])
    per_dep = None
    if all(k in u for k in UNIT_TERMS):   # compile excluded
        per_dep = [sum(deployment_parts(u, static, d, c["fit_epochs"]).values())
                   for d in range(1, c["deployments"] + 1)]
    return {"counts": c, "terms": terms, "total_s": total, "total_h": total / 3600.0,
            "complete": complete, "total_s_fit_early_stop": low,
            "per_deployment_s": per_dep, "paper_halfcheetah": is_paper_halfcheetah(static)}


UNIT_TERMS = ("collection", "ensemble_fit", "bc", "trpo", "evaluation")


def deployment_parts(u: dict[str, dict], static: StaticConfig, d: int, epochs: int
                     ) -> dict[str, float]:
    """Projected seconds of deployment ``d`` (1-based) by phase, fit at ``epochs`` epochs."""
    return {
        "collection": static.deploy.batch_size * u["collection"]["s"],
        "ensemble_fit": fit_minibatch_steps(static, epochs, range(d, d + 1))
        * u["ensemble_fit"]["s"],
        "bc": static.bc.num_steps * u["bc"]["s"],
        "trpo": static.trpo.iterations * u["trpo"]["s"],
        "evaluation": (1 + static.trpo.iterations // static.trpo.chunk) * u["evaluation"]["s"],
    }


def deployment_check(results: list[dict], static: StaticConfig) -> dict[str, Any] | None:
    """Projected vs measured first deployment (with the fit epochs the measured one ran)."""
    by = _ok(results)
    u = unit_times(results)
    if "deployment" not in by or not all(k in u for k in UNIT_TERMS):
        return None
    d = by["deployment"]
    epochs = d["extra"]["fit_epochs_run"]
    parts = deployment_parts(u, static, 1, epochs)
    projected = sum(parts.values())
    return {"fit_epochs": epochs, "parts_s": parts, "projected_s": projected,
            "measured_s": d["median_s"], "measured_over_projected": d["median_s"] / projected}
