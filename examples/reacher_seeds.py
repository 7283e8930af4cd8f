"""Five seeds of examples/reacher.py in one vmapped program (``bremen sweep``):

    bremen sweep --config examples/reacher_seeds.py --workdir runs/reacher-seeds

Loading the base file registers the ``reacher`` task in this process, as ``bremen train --config
examples/reacher.py`` does; the sweep's summary reports the return after each deployment per seed
and the first deployment's (uniform-random) collection return.
"""

import pathlib

from bremen_jax.config import load_config

BASE = pathlib.Path(__file__).with_name("reacher.py")


def get_config():
    return load_config(str(BASE))  # also registers the task


def get_sweep():
    return {"seeds": 5}
