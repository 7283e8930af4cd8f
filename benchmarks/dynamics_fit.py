"""Throughput of the dynamics-ensemble fit (``python -m benchmarks.dynamics_fit [--out FILE]``).

Paper-size ensemble (5 members × 2×1024 ReLU), HalfCheetah dimensions (obs 17, act 6), minibatch
1000, synthetic data (``--rows`` rows, 85% train / 15% validation), a fixed number of epochs
(early stopping disabled with a huge patience). Two measurements:

* ``fit``: the whole jitted :meth:`Dynamics.fit` (normalisation, per-epoch shuffles, gathers,
  validation, while loops) — what a deployment pays;
* ``step``: ``lax.scan`` over ``--steps`` vmapped Adam steps on fixed minibatches — the
  matmul-bound kernel alone.

FLOP count per member and sample: forward ``2·(in·h1 + h1·h2 + h2·out)``; a training step counts
3× forward (backward ≈ 2× forward; it actually skips the input gradient of the first layer,
``2·in·h1``, so the count is ~0.7% high for these sizes). Validation passes count 1× forward per
validation row. The ratio is taken against :func:`benchmarks.common.measure_matmul_peak`
(measured in the same process, before and after; the best of the two is used).
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import device_info, measure_matmul_peak, peak_memory_bytes, time_jitted
from bremen_jax.models.dynamics import DynamicsConfig, DynamicsHParams, make_dynamics
from bremen_jax.types import Transition


def synthetic_data(rows: int, obs_dim: int, act_dim: int, seed: int = 0) -> Transition:
    """A random linear-plus-tanh system; only shapes and dtypes matter for timing."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(rows, act_dim)).astype(np.float32)
    mix = rng.normal(size=(obs_dim + act_dim, obs_dim)).astype(np.float32) * 0.1
    next_obs = obs + np.tanh(np.concatenate([obs, act], 1) @ mix)
    z = np.zeros(rows, np.float32)
    return Transition(obs=jnp.asarray(obs), action=jnp.asarray(act), reward=jnp.asarray(z),
                      next_obs=jnp.asarray(next_obs), done=jnp.asarray(z),
                      truncation=jnp.asarray(z))


def forward_flops(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> int:
    sizes = (in_dim,) + tuple(hidden) + (out_dim,)
    return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def run(rows: int, epochs: int, members: int, hidden: tuple[int, ...], batch: int, steps: int,
        obs_dim: int, act_dim: int, precision: str, repeats: int) -> dict:
    cfg = DynamicsConfig(num_members=members, hidden_sizes=hidden, batch_size=batch,
                         max_epochs=epochs, eval_every=5, patience=10 ** 6, precision=precision)
    dyn = make_dynamics(obs_dim, act_dim, cfg)
    hp = DynamicsHParams.default(cfg)
    data = synthetic_data(rows, obs_dim, act_dim)
    n_train = int(rows * 0.85)
    train_mask = jnp.arange(rows) < n_train
    val_mask = ~train_mask
    state = dyn.init(jax.random.key(0))
    fwd = forward_flops(obs_dim + act_dim, hidden, obs_dim)

    peak_before = measure_matmul_peak()

    # --- whole fit ---------------------------------------------------------------------------
    fit_timing, (_, metrics) = time_jitted(dyn.fit, state, data, train_mask, val_mask, hp,
                                           jax.random.key(1), repeats=repeats)
    metrics = jax.device_get(metrics)
    batches = n_train // batch
    train_samples = epochs * batches * batch * members          # member-samples
    n_val = int(metrics["n_val"])
    # the initial validation + one per block of epochs ([0], [1, 5], [6, 10], ...)
    val_passes = 2 + -(-(epochs - 1) // cfg.eval_every)
    fit_flops = 3 * fwd * train_samples + fwd * members * n_val * val_passes
    fit_s = fit_timing.median_s

    # --- vmapped step alone ------------------------------------------------------------------
    step = jax.vmap(dyn._member_step, in_axes=(0, 0, 0, 0, None, None, None, 0))
    x = jax.random.normal(jax.random.key(2), (members, batch, obs_dim + act_dim))
    y = jax.random.normal(jax.random.key(3), (members, batch, obs_dim))
    w = jnp.full((batch,), 1.0 / batch)
    run_all = jnp.ones((members,), bool)

    def scan_steps(params, opt_state):
        def body(c, _):
            p, o, mse = step(c[0], c[1], x, y, w, hp.learning_rate, 1e-5, run_all)
            return (p, o), mse
        return jax.lax.scan(body, (params, opt_state), None, length=steps)

    step_timing, _ = time_jitted(scan_steps, state.params, state.opt_state, repeats=repeats)
    step_s = step_timing.median_s / steps
    step_flops = 3 * fwd * members * batch

    peak_after = measure_matmul_peak()
    peak = max(peak_before, peak_after)
    return {
        "benchmark": "dynamics_fit",
        "device": device_info(),
        "load_avg_1_5_15": list(os.getloadavg()),
        "config": {"members": members, "hidden": list(hidden), "obs_dim": obs_dim,
                   "act_dim": act_dim, "batch": batch, "rows": rows, "n_train": n_train,
                   "n_val_used": n_val, "epochs": epochs, "minibatches_per_epoch": batches,
                   "precision": precision},
        "flops_forward_per_sample_member": fwd,
        "matmul_peak_flops": peak, "matmul_peak_before": peak_before,
        "matmul_peak_after": peak_after,
        "fit": {**fit_timing.as_dict(),
                "member_samples_per_s": train_samples / fit_s,
                "transitions_per_s": train_samples / members / fit_s,
                "flops_counted": fit_flops, "flops_per_s": fit_flops / fit_s,
                "ratio_to_peak": fit_flops / fit_s / peak,
                "final_val_loss": [float(v) for v in metrics["val_loss"]]},
        "step": {**step_timing.as_dict(), "steps_per_call": steps, "s_per_step": step_s,
                 "member_samples_per_s": members * batch / step_s,
                 "flops_per_s": step_flops / step_s,
                 "ratio_to_peak": step_flops / step_s / peak},
        "peak_memory_bytes": peak_memory_bytes(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=24000, help="synthetic rows (85%% train)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20, help="steps per call in the step timing")
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    parser.add_argument("--precision", default="highest")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    result = run(args.rows, args.epochs, args.members, tuple(args.hidden), args.batch, args.steps,
                 args.obs_dim, args.act_dim, args.precision, args.repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
