"""A float64 TRPO step on a small MLP problem; tests/test_trpo.py runs it in a subprocess.

Usage: ``python tests/x64_trpo_case.py OUT.json [ROW_CHUNK ...]`` (each ``none`` or an int).
``tests/data/trpo_step_x64_before_row_chunks.json`` is this script's output from the code
before row chunking (commit d690400, whose ``trpo_step`` had no ``row_chunk`` and whose
sequential line search only ran in float32: only ``parallel`` is stored there). CG runs to
convergence (80 iterations, 56 parameters) so that float rounding is not amplified by an
unconverged solve.
"""
import inspect
import json
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bremen_jax.algo import trpo  # noqa: E402

N, O, A = 600, 3, 2


def dist_fn(p, obs):
    """ReLU MLP 3-4-4-4 (mean, per-row log_std); works on [N, o] and on one row [o]."""
    h = jax.nn.relu(obs @ p["w1"] + p["b1"])
    h = jax.nn.relu(h @ p["w2"] + p["b2"])
    out = h @ p["w3"] + p["b3"]
    return out[..., :A], jnp.clip(out[..., A:] - 0.5, -5.0, 0.0)


rng = np.random.default_rng(0)
f = lambda *s: jnp.asarray(rng.normal(size=s) * 0.5, jnp.float64)  # noqa: E731
params = {"w1": f(O, 4), "b1": f(4), "w2": f(4, 4), "b2": f(4), "w3": f(4, 2 * A),
          "b3": f(2 * A)}
obs = f(N, O) * 2
mean, log_std = dist_fn(params, obs)
eps = f(N, A) * 2
actions = mean + jnp.exp(log_std) * eps
adv = eps @ jnp.array([1.0, -1.0]) + 0.3 * obs[:, 0]
adv = (adv - adv.mean()) / adv.std()
mask = jnp.ones((N,)).at[::7].set(0.0)


def run(kwargs: dict) -> dict:
    out = {}
    for ls in ("sequential", "parallel"):
        cfg = trpo.TRPOConfig(line_search=ls, cg_iters=80)
        hp = trpo.TRPOHParams.create(target_kl=0.05, cg_damping=1.0)
        step = jax.jit(lambda p, cfg=cfg, hp=hp: trpo.trpo_step(
            dist_fn, p, obs, actions, adv, mask, cfg, hp, **kwargs))
        try:
            new, m = step(params)
        except TypeError:   # the code before row chunking: sequential search carried float32
            continue
        assert new["w1"].dtype == jnp.float64
        out[ls] = {"params": {k: np.asarray(v).ravel().tolist() for k, v in new.items()},
                   "metrics": {k: float(v) for k, v in m.items()}}
    return out


chunks = sys.argv[2:] or ["none"]
if "row_chunk" not in inspect.signature(trpo.trpo_step).parameters:
    result = {"none": run({})}
else:
    result = {c: run({"row_chunk": None if c == "none" else int(c)}) for c in chunks}
with open(sys.argv[1], "w") as fh:
    json.dump(result, fh)
