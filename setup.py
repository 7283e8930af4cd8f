"""bremen_jax: deployment-efficient model-based offline RL (BREMEN) in JAX."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent

# Ranges were tested with: jax 0.10.2, flax 0.12.8, optax 0.2.8, brax 0.14.2, chex 0.1.92,
# orbax-checkpoint 0.12.x, ml-collections 1.1.0 (Python 3.11 CPU, Python 3.12 CUDA).
INSTALL_REQUIRES = [
    "jax>=0.5.0,<0.13",
    "flax>=0.10.0,<0.13",
    "optax>=0.2.4,<0.3",
    "brax>=0.12.0,<0.15",
    "chex>=0.1.87,<0.2",
    "orbax-checkpoint>=0.11.0,<0.13",
    "ml-collections>=1.0.0,<2",
    "numpy>=1.26",
    "rich>=13",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
    "h5py>=3.10",
    "scipy>=1.11",  # jax needs it anyway; experiments/learning_report.py's Mann-Whitney test
]

setup(
    name="bremen_jax",
    version="0.1.0",
    description="BREMEN (Behavior-Regularized Model-ENsemble) in JAX: fast, vmapped, sharded.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # the library only: shipped configs and sweeps are modules of bremen_jax.configs; the repo's
    # experiments/ and benchmarks/ folders are scripts, not installed (no top-level names claimed)
    packages=find_packages(include=["bremen_jax", "bremen_jax.*"]),
    # the shipped behaviour policies (small .npz checkpoints) and their reference returns
    package_data={"bremen_jax.datasets": ["behaviors/*.json", "behaviors/*/*.json",
                                          "behaviors/*/*.npz"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "import-linter>=2.1",
                "imageio-ffmpeg>=0.4.9"],
        "video": ["imageio-ffmpeg>=0.4.9"],  # bremen render --out FILE.mp4
        "cuda": ["jax[cuda12]>=0.5.0,<0.13"],
    },
    entry_points={"console_scripts": ["bremen=bremen_jax.cli:console_main"]},
)
