"""Random search over HParams on the ``quick`` config: 8 points x 2 seeds = 16 runs, one program.

``bremen sweep --config random_search --workdir runs/random_search``

Points are drawn with NumPy's ``default_rng(seed)`` (the same points every time for the same
``seed``). Distributions: ``uniform``/``log_uniform`` (lo, hi), ``int_uniform`` (lo, hi
inclusive) and ``choice`` ([values]).
"""

from bremen_jax.configs import quick


def get_config():
    return quick.get_config()


def get_sweep():
    return {
        "seeds": [0, 1],
        "random": {
            "num_points": 8,
            "seed": 0,
            "space": {
                "trpo.target_kl": ("log_uniform", 0.05, 1.0),
                "imagine.explore_sigma": ("uniform", 0.05, 0.3),
                "trpo.lam": ("choice", [0.9, 0.95, 0.97]),
                "bc.learning_rate": ("log_uniform", 1e-4, 1e-3),
            },
        },
    }
