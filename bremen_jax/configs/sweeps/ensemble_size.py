"""Ablation over ensemble size (reference §12) on a ``quick``-sized HalfCheetah run.

``bremen sweep --config ensemble_size --workdir runs/ensemble_size``

``dynamics.num_members = 5`` is the static maximum (the parameter arrays hold 5 members); the
sweep varies ``dynamics.num_active`` in 1..5, an HParam: members ``>= num_active`` are masked out
of fitting and never drawn in imagined rollouts, so all 5 x 3 = 15 runs are one compiled program
(every run still pays the compute of 5 members in the fit and in validation). Writes
``plots/final_vs_ensemble_size.png``.
"""

from bremen_jax.configs import quick


def get_config():
    c = quick.get_config()
    c.dynamics.num_members = 5
    c.dynamics.num_active = 5
    return c


def get_sweep():
    return {"seeds": 3, "grid": {"dynamics.num_active": [1, 2, 3, 4, 5]}}
