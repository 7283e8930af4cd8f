"""What fraction of the matmul peak the TRPO iteration's matmul *shapes* reach on this device:
``python -m benchmarks.trpo_ceiling [--out FILE] [--repeats R] [--tiny]``.

Issue 15 asks the faithful TRPO iteration at paper size (50K imagined transitions, H = 250,
5 x 2x1024 ensemble, 200-200 policy) for >= 75% of the measured float32 matmul peak. The peak is
that of square ``[2048, 2048]`` products; the iteration's products are thin (a 17-wide input,
a 12-wide output, 200 rows per rollout step), and thin products run below the square peak
whatever surrounds them. This script times the iteration's matmuls *alone*, at its shapes, in
the same loop structure as the library (rows in chunks of ``ROW_CHUNK``, the rollout a scan over
H steps picking one member per step), with no elementwise work: no activations' masks, no tanh
head, no KL Hessian, no CG vector algebra, no sampling, no reward. Each part's dots-only time is
a floor on the library's time for it, so ``the iteration's counted FLOPs / the sum of the
parts' dots-only times`` bounds from above the fraction of peak any implementation built on
XLA's dot kernels can reach here.

Parts (FLOPs counted as ``bremen bench --phases trpo`` counts them, ``F`` = policy forward FLOPs
per row, ``F_dyn`` = one member's):

* rollout: H steps of ``[B, o+a] @ [o+a, 1024] @ [1024, 1024] @ [1024, o+1]`` with the member's
  weights picked by a dynamic index (``N * F_dyn``; the policy's per-step pass is added at the
  forward rate below);
* Fisher-vector products: 10 Gauss-Newton products, per chunk the JVP's and the VJP's products
  (``10 * 4F * N``, as counted; the first layer's input JVP and input gradient are not needed,
  so slightly fewer are done);
* every other policy pass (advantages 2, linearisation 1, gradient 2, the line search's
  candidates, the rollout's policy 1: ``(6 + candidates) * F * N``; 4 candidates, the number
  ``bremen bench --suite paper --phases trpo`` evaluates from its state), at the forward pass's
  dots-only rate.

Writes ``benchmarks/results/<device>-<date>-trpo-ceiling.json`` (or ``--out``) with each part's
median and best times and fractions, and the iteration's ceiling against the measured peak (the
faster of two measurements, before and after). ``target_reachable`` compares the *median*
ceiling with the target, as ``bremen bench`` reports median phase times against the peak's best
repeat.
"""

from __future__ import annotations

import datetime
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
from jax import lax

from bremen_jax.algo.natural_gradient import ROW_CHUNK
from bremen_jax.bench.common import (device_info, device_slug, matmul_peak,
                                     mlp_forward_flops, time_jitted)
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# paper halfcheetah sizes (bremen bench --suite paper)
PAPER = {"obs": 17, "act": 6, "policy": (200, 200), "dyn": (1024, 1024), "members": 5,
         "transitions": 50_000, "horizon": 250, "cg_iters": 10, "candidates": 4,
         "chunk": ROW_CHUNK}
TINY = {**PAPER, "policy": (16, 16), "dyn": (32, 32), "transitions": 400, "horizon": 10,
        "chunk": 100}
TARGET = 0.75


def _normal(key, shape, scale=1.0):
    return jax.random.normal(key, shape, jnp.float32) * scale


def _weights(key, sizes: tuple, lead: tuple = ()) -> list:
    keys = jax.random.split(key, len(sizes) - 1)
    return [_normal(k, lead + (a, b), a ** -0.5) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def fvp_dots(weights: list, acts: list) -> callable:
    """``v -> Σ_chunks VJP(JVP(v))``, matmuls only: ``acts[i]`` ``[C, chunk, sizes[i]]`` are the
    stored layer inputs (``acts[0]`` the observations); ``v`` is a list like ``weights``."""
    n = len(weights)

    def product(v):
        def body(acc, xs):
            t = None
            for i in range(n):          # JVP: t_{i+1} = x_i dW_i + t_i W_i
                t = xs[i] @ v[i] if t is None else xs[i] @ v[i] + t @ weights[i]
            g, grads = t, [None] * n
            for i in reversed(range(n)):  # VJP: dW_i = x_iᵀ g, g <- g W_iᵀ (not for the input)
                grads[i] = xs[i].T @ g
                if i:
                    g = g @ weights[i].T
            return [a + b for a, b in zip(acc, grads)], None
        return lax.scan(body, [jnp.zeros_like(w) for w in weights], acts)[0]

    return product


def forward_dots(weights: list, obs_chunks: jax.Array) -> jax.Array:
    """The policy's forward pass over ``[C, chunk, o]`` rows, chunk by chunk: matmuls and ReLU
    (the ReLU keeps XLA from merging the layers; it is the only elementwise op)."""
    def body(_, x):
        for i, w in enumerate(weights):
            x = x @ w
            if i < len(weights) - 1:
                x = jnp.maximum(x, 0.0)
        return None, x
    return lax.scan(body, None, obs_chunks)[1]


def rollout_dots(stacked: list, x0: jax.Array, key: jax.Array, horizon: int, members: int,
                 obs: int) -> jax.Array:
    """H steps of one member's MLP on ``[B, o+a]`` rows; the member drawn per step and its
    weights picked by dynamic index (as the library's per-step member sampling)."""
    def step(x, k):
        m = jax.random.randint(k, (), 0, members)
        h = x
        for i, w in enumerate(stacked):
            h = h @ lax.dynamic_index_in_dim(w, m, keepdims=False)
            if i < len(stacked) - 1:
                h = jnp.maximum(h, 0.0)
        nxt = x.at[:, :obs].add(1e-3 * h[:, :obs])
        return nxt, h[:, obs]
    return lax.scan(step, x0, jax.random.split(key, horizon))[1]


def measure(sizes: dict, repeats: int) -> dict:
    o, a = sizes["obs"], sizes["act"]
    pol = (o, *sizes["policy"], 2 * a)
    dyn = (o + a, *sizes["dyn"], o + 1)
    N, chunk, H = sizes["transitions"], sizes["chunk"], sizes["horizon"]
    B, C = N // H, -(-N // chunk)
    F, F_dyn = mlp_forward_flops(pol), mlp_forward_flops(dyn)
    keys = jax.random.split(jax.random.key(0), 6)
    w_pol = _weights(keys[0], pol)
    acts = [_normal(k, (C, chunk, d)) for k, d in zip(jax.random.split(keys[1], len(pol) - 1),
                                                      pol[:-1])]
    w_dyn = _weights(keys[2], dyn, (sizes["members"],))
    x0 = _normal(keys[3], (B, o + a))
    fvp = fvp_dots(w_pol, acts)
    cg = sizes["cg_iters"]

    def fvps(v):   # CG's products in sequence (each input depends on the last output)
        return lax.fori_loop(0, cg, lambda _, u: [w / (jnp.max(jnp.abs(w)) + 1.0) for w in fvp(u)],
                             v)

    parts = {
        "rollout_dynamics": (lambda: time_jitted(
            functools.partial(rollout_dots, horizon=H, members=sizes["members"], obs=o),
            w_dyn, x0, keys[4], repeats=repeats),
                             N * F_dyn, "N*F_dyn: H steps, one member's MLP on B rows"),
        "fisher_vector_products": (lambda: time_jitted(fvps, w_pol, repeats=repeats),
                                   cg * 4 * F * N, f"{cg}*4*F*N: JVP + VJP products per chunk"),
        "policy_forward": (lambda: time_jitted(forward_dots, w_pol, acts[0], repeats=repeats),
                           F * N, "F*N: one pass over the rows in chunks"),
    }
    out = {}
    for name, (run, flops, formula) in parts.items():
        timing, _ = run()
        out[name] = {"flop_count": flops, "flop_formula": formula,
                     "median_s": timing.median_s, "min_s": timing.min_s,
                     "compile_s": timing.compile_s}
    other = 6 + sizes["candidates"]   # policy passes besides the FVPs (see the docstring)
    it_flops = N * (F_dyn + F) + 2 * N * F + N * ((3 * F) + cg * 4 * F + sizes["candidates"] * F)
    floor = {k: out["rollout_dynamics"][k] + out["fisher_vector_products"][k]
             + other * out["policy_forward"][k] for k in ("median_s", "min_s")}
    return {"sizes": {**sizes, "policy_layers": pol, "dynamics_layers": dyn, "rollouts": B,
                      "chunks": C},
            "parts": out,
            "iteration": {"flop_count": it_flops,
                          "flop_formula": "as bremen bench counts the trpo_iteration phase",
                          "other_policy_passes": other,
                          "dots_only_s": floor}}


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m benchmarks.trpo_ceiling",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, default=None)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke test, not a result)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats: expected a positive integer, got {args.repeats}")
    t0 = time.perf_counter()
    info = device_info()
    sizes = TINY if args.tiny else PAPER
    peak = matmul_peak("highest", n=256 if args.tiny else None, repeats=args.repeats)
    res = measure(sizes, args.repeats)
    peak_end = matmul_peak("highest", n=256 if args.tiny else None, repeats=args.repeats)
    pk = max(peak["flops_per_s"], peak_end["flops_per_s"])
    for part in res["parts"].values():
        part["fraction_of_peak"] = {"median": part["flop_count"] / part["median_s"] / pk,
                                    "best": part["flop_count"] / part["min_s"] / pk}
    it = res["iteration"]
    it["ceiling_fraction_of_peak"] = {k: it["flop_count"] / it["dots_only_s"][s] / pk
                                      for k, s in (("median", "median_s"), ("best", "min_s"))}
    it["target"] = TARGET
    # the trpo bench reports median times against the peak's best repeat: compare like that
    it["target_reachable"] = it["ceiling_fraction_of_peak"]["median"] >= TARGET
    date = datetime.date.today().isoformat()
    doc = {"schema": 1, "what": "dots-only ceiling of the TRPO iteration's matmul shapes",
           "date": date, "device": info, "jax_version": jax.__version__,
           "matmul_peak": {"start": peak, "end": peak_end, "used_flops_per_s": pk},
           **res, "wall_s": time.perf_counter() - t0,
           "command": ["python", "-m", "benchmarks.trpo_ceiling", *(argv or sys.argv[1:])]}
    out = args.out or RESULTS / f"{device_slug(info)}-{date}-trpo-ceiling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"peak {pk / 1e9:.0f} GFLOP/s (float32, the faster of the start and end measurements)")
    for name, part in res["parts"].items():
        f = part["fraction_of_peak"]
        print(f"  {name:24s} median {part['median_s'] * 1e3:8.1f} ms  {f['median']:6.1%}  "
              f"best {part['min_s'] * 1e3:8.1f} ms  {f['best']:6.1%}")
    c = it["ceiling_fraction_of_peak"]
    print(f"iteration, dots only: {it['dots_only_s']['median_s']:.3f} s median "
          f"({c['median']:.1%} of peak), {it['dots_only_s']['min_s']:.3f} s best ({c['best']:.1%});"
          f" target {TARGET:.0%} (median): "
          f"{'below the ceiling' if it['target_reachable'] else 'above the ceiling'}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
