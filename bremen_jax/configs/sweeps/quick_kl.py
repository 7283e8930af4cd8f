"""Trust region x model learning rate on the ``quick`` config: 2 x 2 points x 3 seeds = 12 runs.

``bremen sweep --config quick_kl --workdir runs/quick_kl``

All four fields are HParams, so the 12 runs are one compiled program (``vmap`` over a runs axis,
sharded over the devices). ``quick`` uses ``target_kl`` 0.5 (see its docstring); 0.1 is the
paper's HalfCheetah value. One quick run takes ~4-8 minutes on a 2-core CPU, so expect roughly
12x that here on such a machine (a GPU runs them side by side).
"""

from bremen_jax.configs import quick


def get_config():
    return quick.get_config()


def get_sweep():
    return {
        "seeds": 3,
        "grid": {
            "trpo.target_kl": [0.1, 0.5],
            "dynamics.learning_rate": [3e-4, 1e-3],
        },
    }
