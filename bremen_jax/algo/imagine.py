"""Imagined rollouts in the learned model (the original's ``NeuralNetEnv`` + vectorised sampler, §5.1).

``B = imagined_batch / H`` rollouts run in parallel for ``H`` steps as one ``lax.scan``. At each step
the policy acts (mean + sigma*N(0,1) "constant sampling" by default), the action is clipped to
[-1, 1], one ensemble member (drawn uniformly among the *active* members, shared by the whole batch:
the original) predicts the next observation, and the task's analytic ``reward_fn``/``done_fn`` score
it. With learned heads (``dynamics.reward_model = "learned"``, forced for a task without analytic
functions) the member that predicted the step also gives its reward and termination
(``sigmoid(logit) > done_threshold``) instead. A path ends on termination or when it reaches ``H`` steps; ended rollouts restart from a fresh
start state (the real env's reset distribution by default, or dataset states).

Deviation from the original (documented): the original keeps sampling until >= 50K steps of
*completed* paths exist and throws in-progress paths away. Here the scan has a fixed length ``H``, so
the batch holds exactly ``B*H`` rows; rows of a path still in progress when the scan ends are masked
out (``keep_partial_paths=False``, default) or kept as truncated paths (``True``). For tasks without
termination (halfcheetah, ant) both give exactly the original's 200 x 250 batch.
"""

from __future__ import annotations

import functools
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp

from bremen_jax.types import PRNGKey


@flax.struct.dataclass
class ImaginedBatch:
    """Leaves are time-major ``[H, B, ...]``.

    Attributes:
        obs: ``[H, B, o]`` observation before the step.
        action: ``[H, B, a]`` sampled action (unclipped, as the original stores it).
        reward: ``[H, B]`` task reward on the clipped action.
        next_obs: ``[H, B, o]`` model prediction.
        terminated: ``[H, B]`` float32, task termination fired on ``next_obs``.
        path_end: ``[H, B]`` float32, the path ended here (terminated or reached ``H`` steps or the
            end of the scan when partial paths are kept).
        t: ``[H, B]`` int32 step index within the path (for the baseline's time features).
        mask: ``[H, B]`` float32, 1 for rows that enter the update.
        disagreement: ``[H, B]`` float32 :func:`member_disagreement` of each step with
            ``imagine.penalty='disagreement'`` (``reward`` is then already penalised), else None.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    path_end: jax.Array
    t: jax.Array
    mask: jax.Array
    disagreement: jax.Array | None = None


def start_sampler(reset_obs_fn: Callable, pool_obs=None, pool_mask=None,
                  reset_fraction: float = 0.0) -> Callable[[PRNGKey, int], jax.Array]:
    """``sample(key, n) -> [n, o]`` start states: the task's reset distribution, or uniform over
    the rows of ``pool_obs [P, o]`` with ``pool_mask [P]`` set (``start_states='dataset'`` /
    ``'latest'``), or, with a pool and ``reset_fraction`` in (0, 1) (``'reset_latest'``: 0.5),
    each row independently a reset state with probability ``reset_fraction`` and a pool row
    otherwise.

    Build it once, outside the rollout's step loop: the pool's running count of valid rows is
    taken here (``O(P)``), and each ``sample`` draws ``n`` ranks among the valid rows and finds
    their rows by binary search (``O(n log P)``). (Before, every step drew ``n`` categorical
    samples over the ``P`` rows, ``n x P`` Gumbel draws: with the quick config's 80K-row buffer
    that was 8M random numbers per imagined step.) An empty pool gives row 0.
    """
    if not 0.0 <= reset_fraction < 1.0:
        raise ValueError(f"reset_fraction must be in [0, 1), got {reset_fraction}")
    resets = lambda key, n: jax.vmap(reset_obs_fn)(jax.random.split(key, n))  # noqa: E731
    if pool_obs is None:
        return resets
    ranks = jnp.cumsum(pool_mask.astype(jnp.int32))           # [P] valid rows up to each row
    count = jnp.maximum(ranks[-1], 1)
    last = pool_obs.shape[0] - 1

    def sample(key: PRNGKey, n: int) -> jax.Array:
        r = jax.random.randint(key, (n,), 0, count)            # rank among the valid rows
        idx = jnp.minimum(jnp.searchsorted(ranks, r, side="right"), last)
        return pool_obs[idx]

    if reset_fraction == 0.0:
        return sample

    def mixed(key: PRNGKey, n: int) -> jax.Array:
        key_pool, key_reset, key_coin = jax.random.split(key, 3)
        coin = jax.random.bernoulli(key_coin, reset_fraction, (n,))
        return jnp.where(coin[:, None], resets(key_reset, n), sample(key_pool, n))

    return mixed


def _score(task, dynamics, obs, a_clip, next_obs, reward, logit):
    """Reward and termination (float32) of an imagined step: the learned heads' (``reward``,
    ``sigmoid(logit) > dynamics.cfg.done_threshold``) or the task's analytic functions."""
    if dynamics.heads:
        return reward, (jax.nn.sigmoid(logit) > dynamics.cfg.done_threshold).astype(jnp.float32)
    return task.reward_fn(obs, a_clip, next_obs), task.done_fn(next_obs).astype(jnp.float32)


def member_disagreement(all_next_obs: jax.Array, delta_std: jax.Array,
                        num_active: jax.Array) -> jax.Array:
    """How much the active members disagree on the next state: ``[E, ..., o] -> [...]``.

    Each dimension is put in units of the data's per-dimension delta std (``delta_std [o]``, the
    dynamics normaliser's), the (population) std over members ``[0, num_active)`` is taken per
    dimension, and its L2 norm over dimensions is returned. One active member gives 0.
    """
    E = all_next_obs.shape[0]
    z = all_next_obs / delta_std
    w = (jnp.arange(E) < num_active).astype(z.dtype).reshape((E,) + (1,) * (z.ndim - 1))
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(w * z, axis=0) / n
    var = jnp.sum(w * jnp.square(z - mean), axis=0) / n
    return jnp.sqrt(jnp.sum(var, axis=-1))


def make_imagined_rollout(task, dynamics, policy, *, horizon: int, num_rollouts: int,
                          member_sampling: str = "per_step", exploration: str = "constant",
                          keep_partial_paths: bool = False, penalty: str = "none",
                          reset_fraction: float = 0.0) -> Callable:
    """Builds ``rollout(dyn_state, policy_params, explore_sigma, num_active, key, start_obs=None,
    start_mask=None, penalty_coef=0.0, path_cap=0) -> ImaginedBatch``.

    With ``penalty='disagreement'`` (not in the original; MOPO-style pessimism, Yu et al. 2020)
    every active member predicts every step, the path follows the drawn member's prediction as
    without it, and the step's reward is ``r - penalty_coef * member_disagreement`` (the batch
    keeps the disagreement). Where the members disagree the model is unreliable, so the policy
    is not paid for going there.

    Args (of the returned function):
        dyn_state: a ``DynamicsState`` of ``dynamics``.
        policy_params: ``PolicyParams`` of ``policy``.
        explore_sigma: scalar sigma of constant exploration (ignored for ``exploration='learned'``).
        num_active: int32 scalar, members ``[0, num_active)`` may be drawn.
        key: PRNG key.
        start_obs / start_mask: optional ``[P, o]`` pool of start states and its ``[P]`` bool mask
            (``start_states='dataset'`` / ``'latest'`` / ``'reset_latest'``, the last mixed
            with reset states at ``reset_fraction``); ``None`` samples the task's reset
            distribution.
        penalty_coef: scalar lambda of ``penalty='disagreement'`` (ignored otherwise).
        path_cap: int32 scalar; > 0 ends every path after ``min(path_cap, horizon)`` steps
            (``imagine.warmup_horizon``) inside the same ``horizon``-step scan: a column then
            holds several paths, and the rows of the one the scan cuts follow
            ``keep_partial_paths``. 0 (default): paths of ``horizon`` steps.
    """
    if penalty not in ("none", "disagreement"):
        raise ValueError(f"penalty must be 'none' or 'disagreement', got {penalty!r}")
    if member_sampling not in ("per_step", "per_rollout"):
        raise ValueError(f"member_sampling must be 'per_step' or 'per_rollout', got {member_sampling!r}")
    if exploration not in ("constant", "learned"):
        raise ValueError(f"exploration must be 'constant' or 'learned', got {exploration!r}")
    if horizon <= 0 or num_rollouts <= 0:
        raise ValueError(f"horizon and num_rollouts must be > 0, got {horizon}, {num_rollouts}")
    if not dynamics.heads and (task.reward_fn is None or task.done_fn is None):
        raise ValueError(f"task {task.name!r} has no analytic reward_fn/done_fn; build the "
                         f"ensemble with dynamics.reward_model='learned' (or 'auto')")
    B, H = num_rollouts, horizon
    score = functools.partial(_score, task, dynamics)

    def rollout(dyn_state, policy_params, explore_sigma, num_active, key, start_obs=None,
                start_mask=None, penalty_coef=0.0, path_cap=0) -> ImaginedBatch:
        key_start, key_m0, key_scan = jax.random.split(key, 3)
        cap = jnp.where(path_cap > 0, jnp.minimum(path_cap, H), H)
        sample_starts = start_sampler(task.reset_obs, start_obs, start_mask, reset_fraction)
        obs0 = sample_starts(key_start, B)
        member0 = jax.random.randint(key_m0, (B,), 0, num_active)

        def step(carry, key_t):
            obs, t, member = carry
            key_act, key_member, key_reset, key_rmember = jax.random.split(key_t, 4)
            mean, log_std = policy.dist(policy_params, obs)
            noise = jax.random.normal(key_act, mean.shape, mean.dtype)
            scale = explore_sigma if exploration == "constant" else jnp.exp(log_std)
            action = mean + scale * noise
            a_clip = jnp.clip(action, -1.0, 1.0)
            all_out = None
            if member_sampling == "per_rollout" or penalty == "disagreement":
                all_out = dynamics.predict_all_step(dyn_state, obs, a_clip)  # [E, B, ...] leaves
            if member_sampling == "per_step":
                k = jax.random.randint(key_member, (), 0, num_active)
                if all_out is None:
                    next_obs, r_head, logit = dynamics.predict_step(dyn_state, obs, a_clip, k)
                else:
                    next_obs, r_head, logit = jax.tree.map(lambda v: v[k], all_out)
            else:
                next_obs, r_head, logit = jax.tree.map(
                    lambda v: jnp.take_along_axis(
                        v, member.reshape((1, B) + (1,) * (v.ndim - 2)), axis=0)[0], all_out)
            finite = jnp.all(jnp.isfinite(next_obs), axis=-1)
            if dynamics.heads:
                finite = finite & jnp.isfinite(r_head) & jnp.isfinite(logit)
            next_obs = jnp.where(finite[:, None], next_obs, 0.0)
            reward, done = score(obs, a_clip, next_obs, r_head, logit)
            if penalty == "disagreement":
                u = member_disagreement(all_out[0], dyn_state.norm.delta_std, num_active)
                u = jnp.where(finite & jnp.isfinite(u), u, 0.0)
                reward = reward - penalty_coef * u
            else:
                u = None
            reward = jnp.where(finite, reward, 0.0)
            terminated = jnp.maximum(done, 1.0 - finite.astype(jnp.float32))
            end = jnp.maximum(terminated, (t + 1 >= cap).astype(jnp.float32))
            fresh = sample_starts(key_reset, B)
            new_member = jax.random.randint(key_rmember, (B,), 0, num_active)
            ended = end > 0
            carry = (jnp.where(ended[:, None], fresh, next_obs), jnp.where(ended, 0, t + 1),
                     jnp.where(ended, new_member, member))
            out = (obs, action, reward, next_obs, terminated, end, t, u)
            return carry, out

        carry0 = (obs0, jnp.zeros((B,), jnp.int32), member0)
        _, (obs, action, reward, next_obs, terminated, end, t, u) = jax.lax.scan(
            step, carry0, jax.random.split(key_scan, H))
        # Rows after the last path end of a column belong to a path still in progress.
        ends_from_here = jnp.flip(jnp.cumsum(jnp.flip(end, 0), 0), 0)
        complete = (ends_from_here > 0).astype(jnp.float32)
        if keep_partial_paths:
            mask = jnp.ones_like(end)
            end = end.at[-1].set(1.0)
        else:
            mask = complete
        return ImaginedBatch(obs=obs, action=action, reward=reward, next_obs=next_obs,
                             terminated=terminated, path_end=end, t=t, mask=mask,
                             disagreement=u)

    return rollout


def first_path_returns(batch: ImaginedBatch) -> tuple[jax.Array, jax.Array]:
    """Return and length of each column's first path (the rows before its first ``path_end``,
    that one included): ``([B] float32, [B] float32)``."""
    ended_before = jnp.cumsum(batch.path_end, axis=0) - batch.path_end
    first = (ended_before == 0).astype(jnp.float32)
    return jnp.sum(batch.reward * first, axis=0), jnp.sum(first, axis=0)


def make_model_evaluator(task, dynamics, policy, *, horizon: int, num_episodes: int,
                         member_sampling: str = "per_step") -> Callable:
    """The real evaluation's episodes played in the learned model instead of the environment.

    Builds ``model_eval(dyn_state, policy_params, num_active, key) -> (returns [num_episodes],
    lengths [num_episodes])``: the policy's mean action (no exploration, as the deterministic real
    evaluation), from the task's reset distribution, for ``horizon`` imagined steps (the
    imagination horizon H: what TRPO optimises) or until the task's (or the learned head's)
    termination. Its mean minus the real episodes' return over their first ``horizon`` steps is
    the model's over-estimate of the policy (``eval/model_gap``): a gap that grows while TRPO's
    imagined return rises is the policy exploiting the model.
    """
    rollout = make_imagined_rollout(task, dynamics, policy, horizon=horizon,
                                    num_rollouts=num_episodes, member_sampling=member_sampling,
                                    exploration="constant", keep_partial_paths=True)

    def model_eval(dyn_state, policy_params, num_active, key):
        batch = rollout(dyn_state, policy_params, jnp.float32(0.0), num_active, key)
        return first_path_returns(batch)

    return model_eval


def make_member_evaluator(task, dynamics, policy, *, horizon: int, num_rollouts: int,
                          reset_fraction: float = 0.0) -> Callable:
    """The policy's imagined return under each ensemble member on its own (ME-TRPO's policy
    validation, Kurutach et al. 2018; not in the original BREMEN).

    Builds ``member_eval(dyn_state, policy_params, key, start_obs=None, start_mask=None) ->
    returns [E]``: ``num_rollouts`` start states (the same for every member: drawn from ``key``),
    the policy's mean action, member ``e`` alone predicting every step of its rollouts, for
    ``horizon`` steps or until termination (the task's, or the learned head's); the mean over
    the rollouts of each path's undiscounted return. Calling it with the same ``key`` for two
    policies compares them on common random numbers.
    """
    if horizon <= 0 or num_rollouts <= 0:
        raise ValueError(f"horizon and num_rollouts must be > 0, got {horizon}, {num_rollouts}")
    E, B = dynamics.cfg.num_members, num_rollouts

    def member_eval(dyn_state, policy_params, key, start_obs=None, start_mask=None):
        obs0 = start_sampler(task.reset_obs, start_obs, start_mask, reset_fraction)(key, B)
        obs0 = jnp.broadcast_to(obs0, (E,) + obs0.shape)                               # [E, B, o]

        def step(carry, _):
            obs, alive, ret = carry
            mean, _ = policy.dist(policy_params, obs)
            a_clip = jnp.clip(mean, -1.0, 1.0)
            next_obs, r_head, logit = dynamics.predict_each_step(dyn_state, obs, a_clip)
            finite = jnp.all(jnp.isfinite(next_obs), axis=-1)
            next_obs = jnp.where(finite[..., None], next_obs, 0.0)
            reward, done = _score(task, dynamics, obs, a_clip, next_obs, r_head, logit)
            ret = ret + alive * jnp.where(finite, reward, 0.0)
            alive = alive * (1.0 - jnp.maximum(done, 1.0 - finite.astype(jnp.float32)))
            return (next_obs, alive, ret), None

        zeros = jnp.zeros((E, B), jnp.float32)
        (_, _, ret), _ = jax.lax.scan(step, (obs0, zeros + 1.0, zeros), None, length=horizon)
        return jnp.mean(ret, axis=1)

    return member_eval
