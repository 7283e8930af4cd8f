"""Tiny sweep for the test-suite: 2 HParam points x 2 seeds of the ``test`` config (one program).

The two points differ in the ensemble's active members (2 of the static 3) and the trust region,
so the tests check both the HParam runs axis and ensemble-size masking. ``trpo.cg_damping`` is
100 (paper: 0.1) so that the comparisons against runs done one by one hold over the whole run:
the batched and unbatched programs use different matmul kernels and agree to float32 rounding,
and with damping 0.1 the conjugate-gradient solve on this tiny batch (160 imagined transitions)
amplifies those 1e-7 differences ~1000-fold per TRPO iteration (tests/test_sweep.py). With
damping 10 the whole-run differences still reached 1-4% of a metric's scale and, by chance, one
evaluation episode ended a step earlier (1% of its return); with 100 they stay below 0.3%.
"""

from bremen_jax.configs import test


def get_config():
    c = test.get_config()
    c.trpo.cg_damping = 100.0
    return c


def get_sweep():
    return {
        "seeds": 2,
        "points": [
            {"dynamics.num_active": 2, "trpo.target_kl": 0.05},
            {"dynamics.num_active": 3, "trpo.target_kl": 0.1},
        ],
    }
