"""Tiny configuration for the test-suite: seconds per deployment on a CPU."""

from bremen_jax.configs import default


def get_config():
    c = default.get_config()
    c.task = "inverted_pendulum"
    c.backend = "positional"
    c.compile_effort = "fast"  # its runs take seconds: half the compile beats faster steps
    c.episode_length = 50
    c.dynamics.num_members = 3
    c.dynamics.num_active = 3
    c.dynamics.hidden_sizes = (32, 32)
    c.dynamics.batch_size = 50
    c.dynamics.max_epochs = 10
    c.dynamics.eval_every = 2
    c.dynamics.patience = 4
    c.policy.hidden_sizes = (16, 16)
    c.bc.num_steps = 50
    c.bc.batch_size = 32
    c.imagine.horizon = 20
    c.imagine.batch_size = 20 * 8
    c.trpo.iterations = 4
    c.trpo.chunk = 2
    c.deploy.num_deployments = 2
    c.deploy.batch_size = 400
    c.deploy.num_envs = 8
    c.eval.num_episodes = 2
    return c
