"""One TRPO iteration on imagined rollouts at the paper's sizes, split into its parts.

``python -m benchmarks.trpo_iteration [--config halfcheetah] [--out FILE]``

Parts, each jitted and timed on its own (compile separate from steady state): the imagined
rollout (B = 50,000 / H rollouts x H steps, one ensemble member per step), advantages (baseline
values, GAE, standardisation), the update (TRPO step + baseline refit), and the whole iteration.
FLOP count of the rollout: per imagined transition one member's MLP forward
(2 * sum(fan_in * fan_out)) plus the policy forward; stated in the output.
"""

from __future__ import annotations

import argparse
import json

import jax

from benchmarks.common import device_info, measure_matmul_peak, time_jitted
from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases


def mlp_forward_flops(sizes) -> int:
    return 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def run(config: str = "halfcheetah", overrides=(), repeats: int = 3) -> dict:
    cfg = config_lib.apply_overrides(config_lib.load_config(config), list(overrides))
    static, hp = config_lib.split(cfg)
    phases = make_phases(static, capacity=1000, max_segments=1)
    task = phases.task
    o, a = task.obs_size, task.action_size
    state = phases.init(jax.random.key(0))
    opt = phases.opt
    learner, dyn = state.learner, state.dynamics
    key = jax.random.key(1)
    with jax.default_matmul_precision(static.precision):
        t_roll, batch = time_jitted(opt.imagine, learner, dyn, hp, key, repeats=repeats)
        t_adv, adv_out = time_jitted(opt.advantages, learner, batch, hp, repeats=repeats)
        adv_std, targets, obs_hat, _ = adv_out
        t_upd, _ = time_jitted(opt.update, learner, batch, adv_std, targets, obs_hat, hp, key,
                               repeats=repeats)
        t_it, _ = time_jitted(opt.iteration, learner, dyn, hp, key, repeats=repeats)
    n = static.imagined_batch
    dyn_flops = mlp_forward_flops((o + a, *static.dynamics.hidden_sizes, o))
    pol_flops = mlp_forward_flops((o, *static.policy_hidden_sizes, 2 * a))
    roll_flops = n * (dyn_flops + pol_flops)
    peak = measure_matmul_peak()
    return {
        "benchmark": "trpo_iteration", "config": config, "overrides": list(overrides),
        "device": device_info(), "precision": static.precision,
        "imagined_transitions": n, "horizon": static.horizon, "rollouts": static.num_rollouts,
        "ensemble": f"{static.dynamics.num_members}x{static.dynamics.hidden_sizes}",
        "policy": list(static.policy_hidden_sizes),
        "rollout": t_roll.as_dict(), "advantages": t_adv.as_dict(), "update": t_upd.as_dict(),
        "iteration": t_it.as_dict(),
        "flop_count": "rollout = N * (2*sum(fan_in*fan_out) of one dynamics member + policy)",
        "rollout_flops": roll_flops,
        "rollout_gflops_per_s": roll_flops / t_roll.median_s / 1e9,
        "matmul_peak_gflops_per_s": peak / 1e9,
        "rollout_fraction_of_peak": roll_flops / t_roll.median_s / peak,
        "imagined_transitions_per_s": n / t_roll.median_s,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="halfcheetah")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("overrides", nargs="*", help="config overrides FIELD=VALUE")
    args = p.parse_args(argv)
    result = run(args.config, args.overrides, args.repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
