"""Bring your own task: BREMEN on Brax's ``reacher``, which bremen_jax does not ship.

    bremen train --config examples/reacher.py
    bremen train --config examples/reacher.py --resume --workdir runs/<that run>  # continue it

The task has no analytic reward or termination functions here: ``make_custom_task`` without
``reward_fn``/``done_fn`` keeps the env's own reward (``-|fingertip - target| - |a|²``) and done,
and ``dynamics.reward_model = "auto"`` (the default) then learns them with two extra heads of the
dynamics ensemble, used to score imagined rollouts. Importing this file registers the task, so
pass the file again with ``--resume`` (the stored config names the task, not this file).

Small sizes for a CPU: 4 deployments of 5,000 real steps (episodes of 100 steps), 3 members of
128x128, 100 TRPO iterations of 4,000 imagined transitions with H = 50 per deployment.
"""

import brax.envs

from bremen_jax.configs import default
from bremen_jax.envs import make_custom_task, register_task

EPISODE_LENGTH = 100


def make_reacher(backend="positional", **env_kwargs):
    """The task factory: ``make_task("reacher", backend=...)`` calls it."""
    env = brax.envs.get_environment("reacher", backend=backend, **env_kwargs)
    return make_custom_task("reacher", env, episode_length=EPISODE_LENGTH)


register_task("reacher", make_reacher, overwrite=True)


def get_config():
    c = default.get_config()
    c.task = "reacher"
    c.backend = "positional"       # compiles and steps fastest on a CPU
    c.episode_length = EPISODE_LENGTH
    c.dynamics.num_members = 3
    c.dynamics.num_active = 3
    c.dynamics.hidden_sizes = (128, 128)
    c.dynamics.batch_size = 256
    c.dynamics.max_epochs = 100
    c.dynamics.patience = 10
    c.policy.hidden_sizes = (64, 64)
    c.bc.num_steps = 2_000
    c.imagine.horizon = 50
    c.imagine.batch_size = 4_000
    c.trpo.target_kl = 0.5
    c.trpo.iterations = 100
    c.trpo.chunk = 25
    c.deploy.num_deployments = 4
    c.deploy.batch_size = 5_000
    c.deploy.num_envs = 50
    c.eval.num_episodes = 5
    return c
