"""A physics-free Brax env shared by tests that collect or evaluate (compiles in about a second).

obs = [x, c]; reset draws x ~ U(0, x0_max) and c ~ U(0, 1) (fresh per reset); a step does
x += 0.1 + 0.1·a, c unchanged; the env's own (native) reward is 2x' (after the step), so that a
test can tell it from a task's reward function (tests use x').
"""

import brax.envs
import jax
import jax.numpy as jnp
from brax.envs.base import State


class ToyEnv(brax.envs.Env):
    def __init__(self, x0_max: float = 1.0):
        self._x0_max = x0_max

    def reset(self, rng):
        key_x, key_c = jax.random.split(rng)
        obs = jnp.stack([jax.random.uniform(key_x, (), maxval=self._x0_max),
                         jax.random.uniform(key_c, ())])
        return State(pipeline_state=None, obs=obs, reward=jnp.zeros(()), done=jnp.zeros(()))

    def step(self, state, action):
        x = state.obs[0] + 0.1 + 0.1 * action[0]
        return state.replace(obs=state.obs.at[0].set(x), reward=2.0 * x)

    @property
    def observation_size(self):
        return 2

    @property
    def action_size(self):
        return 1

    @property
    def backend(self):
        return "toy"
