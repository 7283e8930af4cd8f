"""Real-environment data collection and evaluation on a :class:`~bremen_jax.envs.Task`.

``make_collector`` returns a pure, jittable ``collect(params, key)`` that rolls ``num_envs``
vmapped envs for ``num_steps`` steps with ``lax.scan``. Finished episodes (task termination or the
time limit ``task.episode_length``) are reset with FRESH samples from the reset distribution (unlike
Brax's ``AutoResetWrapper``, which replays the first state), which is how the original collects its
batches of episodes (reference §8). Deployment #1 of BREMEN uses :func:`uniform_random_policy`.

``make_evaluator`` returns ``evaluate(params, key)`` that runs one episode per env until its first
termination or ``max_steps`` (the original's 3 deterministic evaluation episodes, §8).
"""

from __future__ import annotations

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp

from bremen_jax.envs.task import NATIVE_REWARD, Task
from bremen_jax.types import Metrics, Params, PolicyFn, PRNGKey, Transition, check_positive_int


@flax.struct.dataclass
class EpisodeStats:
    """Per-step episode bookkeeping of a collection; leaves ``[T, N]``.

    Attributes:
        ended: bool, an episode ended at this step (termination or time limit).
        returns: float32 task return of the episode that ended here (0 elsewhere).
        native_returns: float32 Brax-native return of that episode (0 elsewhere).
        lengths: int32 length of that episode (0 elsewhere).
        nonfinite_actions: bool, the policy's action had a non-finite entry (the env stepped
            with those entries set to 0, and the row's action holds that masked action);
            ``None`` in stats not made by a collector.
    """

    ended: jax.Array
    returns: jax.Array
    native_returns: jax.Array
    lengths: jax.Array
    nonfinite_actions: jax.Array | None = None


def count_nonfinite_actions(stats: EpisodeStats) -> jax.Array:
    """``[]`` int32: the steps of a collection whose policy action was not finite."""
    return jnp.sum(stats.nonfinite_actions.astype(jnp.int32))


def _check_task_policy(task, policy_fn) -> None:
    if not isinstance(task, Task):
        raise ValueError(f"task must be a bremen_jax.envs.Task, got {type(task).__name__}")
    if not callable(policy_fn):
        raise ValueError(f"policy_fn must be callable, got {type(policy_fn).__name__}")


def summarize_episodes(stats: EpisodeStats) -> Metrics:
    """Masked statistics of the episodes that ended during a collection (jittable).

    Returns ``{"return_mean", "return_min", "return_max", "native_return_mean", "length_mean",
    "num_episodes"}``; the float entries are NaN when no episode ended.
    """
    mask = stats.ended
    count = jnp.sum(mask.astype(jnp.int32))
    denom = jnp.maximum(count, 1).astype(jnp.float32)
    nan = jnp.float32(jnp.nan)

    def masked_mean(x):
        return jnp.where(count > 0, jnp.sum(jnp.where(mask, x, 0.0)) / denom, nan)

    return {
        "return_mean": masked_mean(stats.returns),
        "return_min": jnp.where(count > 0, jnp.min(jnp.where(mask, stats.returns, jnp.inf)), nan),
        "return_max": jnp.where(count > 0, jnp.max(jnp.where(mask, stats.returns, -jnp.inf)), nan),
        "native_return_mean": masked_mean(stats.native_returns),
        "length_mean": masked_mean(stats.lengths.astype(jnp.float32)),
        "num_episodes": count,
    }


def uniform_random_policy(action_size: int) -> PolicyFn:
    """``policy_fn(params, obs, key) -> U(-1, 1)^action_size`` (ignores params and obs)."""
    check_positive_int(action_size, "action_size")

    def policy_fn(params: Params, obs: jax.Array, key: PRNGKey) -> jax.Array:
        del params, obs
        return jax.random.uniform(key, (action_size,), jnp.float32, -1.0, 1.0)

    return policy_fn


def flatten_env_major(tr: Transition) -> Transition:
    """``[T, N, ...] -> [N*T, ...]`` with each env's T steps contiguous (row ``n*T + t``).

    Within an env's block the steps are in time order, so the ordered 85/15 train/validation split
    of the original (reference §2) keeps whole stretches of trajectories together: the last ~15%
    of the envs validate, or with ``dynamics.val_split='per_env'`` the last 15% of every env's
    steps (``data.buffer.insert(num_blocks=N)``).
    """
    def flat(x):
        if x.ndim < 2:
            raise ValueError(f"flatten_env_major expects [T, N, ...] leaves, got shape {x.shape}")
        return jnp.swapaxes(x, 0, 1).reshape((x.shape[0] * x.shape[1],) + x.shape[2:])

    return jax.tree.map(flat, tr)


def _select(mask: jax.Array, on_true, on_false):
    """Per-env ``where`` over two batched pytrees; ``mask`` is ``[N]``."""
    def sel(a, b):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
        return jnp.where(m, a, b)
    return jax.tree.map(sel, on_true, on_false)


def make_collector(task: Task, policy_fn: PolicyFn, num_envs: int, num_steps: int
                   ) -> Callable[[Params, PRNGKey], tuple[Transition, EpisodeStats]]:
    """Builds ``collect(policy_params, key) -> (Transition [T, N, ...], EpisodeStats [T, N])``.

    ``T = num_steps``, ``N = num_envs``. All envs start from fresh reset samples. Each step the
    policy is vmapped over envs (one key per env per step), the envs step with the (env-clipped)
    action, and envs whose episode ended (task termination, or ``task.episode_length`` steps) are
    reset with fresh samples; the reset is skipped (``lax.cond``) on steps where no env ended.
    ``next_obs`` is always the true successor; the following row's ``obs`` is then the reset
    observation. ``truncation`` marks time-limit ends only: the last row of each env is usually an
    unfinished episode (not flagged). Only complete episodes appear in ``EpisodeStats``.
    A non-finite action never reaches an env or the transitions: its non-finite entries are set
    to 0 and the step is flagged in ``EpisodeStats.nonfinite_actions`` (callers that fill a
    buffer refuse such a batch; see :func:`count_nonfinite_actions`).

    Raises:
        ValueError: task not a Task, policy_fn not callable, num_envs/num_steps not positive ints.
    """
    _check_task_policy(task, policy_fn)
    check_positive_int(num_envs, "num_envs")
    check_positive_int(num_steps, "num_steps")
    env = task.env
    episode_length = task.episode_length
    reset_batch = jax.vmap(env.reset)
    step_batch = jax.vmap(env.step)
    act_batch = jax.vmap(policy_fn, in_axes=(None, 0, 0))

    def collect(policy_params: Params, key: PRNGKey) -> tuple[Transition, EpisodeStats]:
        # The carry starts from a placeholder state with every env flagged for reset, so the first
        # step draws the initial states through the same (only) reset in the program: Brax's
        # pipeline init is expensive to compile, and this halves the reset code in the graph.
        blank = jax.tree.map(jnp.zeros_like,  # also fine for typed-key leaves in State.info
                             jax.eval_shape(reset_batch, jax.random.split(key, num_envs)))
        zeros_f = jnp.zeros((num_envs,), jnp.float32)
        carry0 = (blank, jnp.ones((num_envs,), bool), jnp.zeros((num_envs,), jnp.int32), zeros_f,
                  zeros_f)

        def body(carry, key_step):
            state, needs_reset, t, ret, native_ret = carry
            key_reset, key_act = jax.random.split(key_step)
            state = jax.lax.cond(
                jnp.any(needs_reset),
                lambda s: _select(needs_reset,
                                  reset_batch(jax.random.split(key_reset, num_envs)), s),
                lambda s: s,
                state)
            t = jnp.where(needs_reset, 0, t) + 1
            ret = jnp.where(needs_reset, 0.0, ret)
            native_ret = jnp.where(needs_reset, 0.0, native_ret)
            action = act_batch(policy_params, state.obs, jax.random.split(key_act, num_envs))
            finite = jnp.isfinite(action)
            bad = ~jnp.all(finite, axis=-1)              # [N]: never step an env with NaN/inf
            action = jnp.where(finite, action, 0.0)
            nstate = step_batch(state, action)
            ret = ret + nstate.reward
            native_ret = native_ret + nstate.metrics[NATIVE_REWARD]
            terminated = nstate.done > 0.5
            truncated = jnp.logical_and(t >= episode_length, jnp.logical_not(terminated))
            ended = jnp.logical_or(terminated, truncated)
            transition = Transition(obs=state.obs, action=action.astype(jnp.float32),
                                    reward=nstate.reward, next_obs=nstate.obs,
                                    done=terminated.astype(jnp.float32),
                                    truncation=truncated.astype(jnp.float32))
            stats = EpisodeStats(ended=ended, returns=jnp.where(ended, ret, 0.0),
                                 native_returns=jnp.where(ended, native_ret, 0.0),
                                 lengths=jnp.where(ended, t, 0), nonfinite_actions=bad)
            return (nstate, ended, t, ret, native_ret), (transition, stats)

        _, (transitions, stats) = jax.lax.scan(body, carry0, jax.random.split(key, num_steps))
        return transitions, stats

    return collect


def make_evaluator(task: Task, policy_fn: PolicyFn, num_episodes: int, max_steps: int | None = None,
                   prefix_steps: int | None = None) -> Callable[[Params, PRNGKey], Metrics]:
    """Builds ``evaluate(policy_params, key) -> metrics`` over ``num_episodes`` parallel episodes.

    Each env runs from a fresh reset until its first task termination or ``max_steps`` (default
    ``task.episode_length``); task and native rewards are summed up to and including the terminating
    step. The loop is a ``lax.while_loop`` that stops once every episode has finished. Returns
    float32 ``{"return_mean", "return_std", "native_return_mean", "length_mean"}``, and with
    ``prefix_steps`` also ``"prefix_return_mean"``: the mean return of the episodes' first
    ``prefix_steps`` steps (what a model rollout of that horizon predicts; the other metrics are
    unchanged).
    """
    _check_task_policy(task, policy_fn)
    check_positive_int(num_episodes, "num_episodes")
    max_steps = (task.episode_length if max_steps is None
                 else check_positive_int(max_steps, "max_steps"))
    env = task.env
    reset_batch = jax.vmap(env.reset)
    step_batch = jax.vmap(env.step)
    act_batch = jax.vmap(policy_fn, in_axes=(None, 0, 0))
    if prefix_steps is not None:
        check_positive_int(prefix_steps, "prefix_steps")
    n = num_episodes

    def evaluate(policy_params: Params, key: PRNGKey) -> Metrics:
        key_reset, key_loop = jax.random.split(key)
        state0 = reset_batch(jax.random.split(key_reset, n))
        zeros_f = jnp.zeros((n,), jnp.float32)
        carry0 = (state0, jnp.ones((n,), bool), zeros_f, zeros_f, zeros_f,
                  jnp.zeros((n,), jnp.int32), jnp.zeros((), jnp.int32), key_loop)

        def cond(carry):
            alive, step = carry[1], carry[6]
            return jnp.logical_and(step < max_steps, jnp.any(alive))

        def body(carry):
            state, alive, ret, prefix_ret, native_ret, length, step, key_loop = carry
            key_loop, key_act = jax.random.split(key_loop)
            action = act_batch(policy_params, state.obs, jax.random.split(key_act, n))
            nstate = step_batch(state, action)
            reward = jnp.where(alive, nstate.reward, 0.0)
            ret = ret + reward
            if prefix_steps is not None:
                prefix_ret = prefix_ret + jnp.where(step < prefix_steps, reward, 0.0)
            native_ret = native_ret + jnp.where(alive, nstate.metrics[NATIVE_REWARD], 0.0)
            length = length + alive.astype(jnp.int32)
            alive = jnp.logical_and(alive, nstate.done <= 0.5)
            return nstate, alive, ret, prefix_ret, native_ret, length, step + 1, key_loop

        _, _, ret, prefix_ret, native_ret, length, _, _ = jax.lax.while_loop(cond, body, carry0)
        out = {
            "return_mean": jnp.mean(ret),
            "return_std": jnp.std(ret),
            "native_return_mean": jnp.mean(native_ret),
            "length_mean": jnp.mean(length.astype(jnp.float32)),
        }
        if prefix_steps is not None:
            out["prefix_return_mean"] = jnp.mean(prefix_ret)
        return out

    return evaluate
