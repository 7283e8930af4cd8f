"""bremen_jax: BREMEN (Matsushima et al., ICLR 2021) in JAX.

Subpackages: ``envs`` (tasks on Brax), ``data`` (buffer, dataset files, real-env
collection), ``models`` (networks, dynamics ensemble), ``algo`` (BC, TRPO, BREMEN).
"""

__version__ = "0.1.0"
