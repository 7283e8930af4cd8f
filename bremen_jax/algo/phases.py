"""The phases of a BREMEN deployment as pure functions ``(state, hp) -> (state, metrics)`` (DESIGN §3).

A deployment is: ``collect`` (real env; deployment 0 is uniform random, later ones the target policy's
mean + sigma*N(0,1)) -> ``fit_dynamics`` (warm start, cumulative data) -> ``fit_bc`` (latest batch by
default) and re-initialise the target policy from the clone -> ``improve`` (TRPO iterations on
imagined rollouts, in chunks) -> ``evaluate`` (deterministic real episodes; metrics only).

Non-finite guards (issue 13): an update whose result is not finite is rejected (the old params and
optimizer state are kept) and counted: ``nonfinite/dynamics_steps`` (member steps), ``nonfinite/bc_steps``,
``nonfinite/trpo_steps`` and ``nonfinite/baseline_fits`` (running counts over an ``improve`` call);
a collection with a non-finite action is not inserted (``nonfinite/actions``: its steps).

What persists across deployments follows the original (reference §8 table): the buffer is cumulative;
model weights and Adam state are kept; the BC network is re-initialised (fixed seed) but its Adam
state and cumulative observation normaliser persist; the target policy (network and normaliser) is
overwritten by the clone; the linear baseline is kept.

Their order is written once, in :mod:`bremen_jax.algo.schedule`; every driver (:mod:`bremen_jax.run`)
takes it from there.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp

from bremen_jax.algo.bc import BC, BCState, make_bc
from bremen_jax.algo.imagine import make_member_evaluator, make_model_evaluator, start_sampler
from bremen_jax.algo.policy_opt import LearnerState, PolicyOptimizer, make_policy_optimizer
from bremen_jax.config import HParams, StaticConfig
from bremen_jax.data import buffer as buffer_lib
from bremen_jax.envs.acting import count_nonfinite_actions, flatten_env_major, make_collector, \
    make_evaluator, summarize_episodes
from bremen_jax.envs import Task, make_task
from bremen_jax.models.dynamics import Dynamics, DynamicsState, make_dynamics, \
    resolve_reward_model
from bremen_jax.models.policy import Policy, PolicyConfig, make_policy
from bremen_jax.types import Metrics, PRNGKey, Transition


@flax.struct.dataclass
class RunState:
    """Everything one run carries between phases (checkpointed whole).

    Attributes:
        buffer: all real data so far (fixed capacity).
        dynamics: ensemble params, Adam state, normaliser.
        bc: behaviour-cloning state (net, cumulative obs normaliser, Adam state).
        learner: target policy, behaviour policy, baseline.
        deployment: ``()`` int32, deployments whose data has been collected.
        env_steps: ``()`` int32, real transitions collected (evaluation episodes not counted, as the
            original).
        key: the run's PRNG key (typed).
    """

    buffer: buffer_lib.Buffer
    dynamics: DynamicsState
    bc: BCState
    learner: LearnerState
    deployment: jax.Array
    env_steps: jax.Array
    key: jax.Array


# eval.member_rollouts: the start states of the members' evaluation come from this fixed key.
_MEMBER_EVAL_SEED = 20211


def _split(state: RunState, n: int) -> tuple[RunState, jax.Array]:
    keys = jax.random.split(state.key, n + 1)
    return state.replace(key=keys[0]), keys[1:]


@dataclasses.dataclass(frozen=True, eq=False)
class Phases:
    """Static pieces + the phase functions. Build with :func:`make_phases`."""

    static: StaticConfig
    task: Task
    dynamics: Dynamics
    policy: Policy
    bc: BC
    opt: PolicyOptimizer
    capacity: int
    max_segments: int

    # -- init -------------------------------------------------------------------------------------
    def init(self, key: PRNGKey) -> RunState:
        key_dyn, key_bc, key_learner, key_run = jax.random.split(key, 4)
        bc_state = self.bc.init(key_bc)
        learner = self.opt.init_learner(bc_state.params, bc_state.params, key_learner)
        buf = buffer_lib.init_buffer(self.capacity, self.task.obs_size, self.task.action_size,
                                     self.max_segments)
        return RunState(buffer=buf, dynamics=self.dynamics.init(key_dyn), bc=bc_state,
                        learner=learner, deployment=jnp.zeros((), jnp.int32),
                        env_steps=jnp.zeros((), jnp.int32), key=key_run)

    def insert(self, state: RunState, batch: Transition, num_blocks: int = 1) -> RunState:
        """Appends a flat ``[N, ...]`` batch (in episode order) as one new segment; with
        ``num_blocks`` > 1 (a collected batch, ``dynamics.val_split='per_env'``) each of its
        env blocks gets the ordered validation split."""
        buf = buffer_lib.insert(state.buffer, batch, self.static.dynamics.val_fraction, num_blocks)
        return state.replace(buffer=buf, env_steps=state.env_steps + batch.reward.shape[0])

    # -- 1. collect -------------------------------------------------------------------------------
    def _collect_policy(self, params, obs, key):
        """Deployment 0: U(-1, 1); later: policy mean + sigma*N(0, 1) (original ``--const_sampling``)."""
        policy_params, is_random, sigma = params
        key_u, key_n = jax.random.split(key)
        uniform = jax.random.uniform(key_u, (self.task.action_size,), minval=-1.0, maxval=1.0)
        mean, log_std = self.policy.dist(policy_params, obs)
        scale = sigma if self.static.imagine.exploration == "constant" else jnp.exp(log_std)
        explore = mean + scale * jax.random.normal(key_n, mean.shape)
        return jnp.where(is_random, uniform, explore)

    def collect(self, state: RunState, hp: HParams) -> tuple[RunState, Metrics]:
        s = self.static
        collector = make_collector(self.task, self._collect_policy, s.deploy.num_envs,
                                   s.deploy.collect_steps)
        state, (key,) = _split(state, 1)
        params = (state.learner.policy, state.deployment == 0, hp.imagine.explore_sigma)
        transitions, stats = collector(params, key)
        bad = count_nonfinite_actions(stats)
        # A batch with a non-finite action never enters the buffer (the counter still moves;
        # the drivers stop the run on the nonfinite/actions metric).
        insert = functools.partial(self.insert, num_blocks=s.val_blocks)
        state = jax.lax.cond(bad == 0, insert, lambda st, _: st, state,
                             flatten_env_major(transitions))
        metrics = {f"collect/{k}": v for k, v in summarize_episodes(stats).items()}
        metrics["nonfinite/actions"] = bad
        return state.replace(deployment=state.deployment + 1), metrics

    # -- 2. dynamics --------------------------------------------------------------------------------
    def fit_dynamics(self, state: RunState, hp: HParams) -> tuple[RunState, Metrics]:
        state, (key,) = _split(state, 1)
        buf = state.buffer
        dyn, m = self.dynamics.fit(state.dynamics, buf.data, buffer_lib.train_mask(buf),
                                   buffer_lib.val_mask(buf), hp.dynamics, key)
        m = {f"dynamics/{k}": v for k, v in m.items()}
        m["nonfinite/dynamics_steps"] = m.pop("dynamics/nonfinite_steps")
        return state.replace(dynamics=dyn), m

    # -- 3. behaviour cloning + re-initialisation ------------------------------------------------------
    def fit_bc(self, state: RunState, hp: HParams) -> tuple[RunState, Metrics]:
        state, (key,) = _split(state, 1)
        buf = state.buffer
        mask = (buffer_lib.latest_segment_mask(buf) if self.static.bc.data == "latest"
                else buffer_lib.valid_mask(buf))
        bc_state, m = self.bc.fit(state.bc, buf.data, mask, hp.bc, key)
        # --bc_init: the target policy becomes the clone (net and observation normaliser).
        learner = state.learner.replace(policy=bc_state.params, behavior=bc_state.params)
        m = {f"bc/{k}": v for k, v in m.items()}
        m["nonfinite/bc_steps"] = m.pop("bc/nonfinite_steps")
        return state.replace(bc=bc_state, learner=learner), m

    # -- 4. TRPO on imagined rollouts ---------------------------------------------------------------
    def _start_pool(self, state: RunState):
        starts = self.static.imagine.start_states
        buf = state.buffer
        if starts == "dataset":
            return buf.data.obs, buffer_lib.valid_mask(buf)
        if starts in ("latest", "reset_latest"):
            return buf.data.obs, buffer_lib.latest_segment_mask(buf)
        return None, None

    def _kl_states(self, state: RunState, key: PRNGKey):
        """``[imagine.batch_size, o]`` rows of the latest batch (offline: the dataset), uniform
        with replacement, on which ``trpo.kl_budget_states`` latest / max measures the KL to the
        clone; ``None`` for ``imagined``. Own key (``fold_in``): the run's other draws do not
        move."""
        if self.static.trpo.kl_budget_states == "imagined":
            return None
        buf = state.buffer
        sample = start_sampler(None, buf.data.obs, buffer_lib.latest_segment_mask(buf))
        return sample(jax.random.fold_in(key, 2), self.static.imagine.batch_size)

    def improve(self, state: RunState, hp: HParams, num_iterations: int, offline: bool = False
                ) -> tuple[RunState, Metrics]:
        """``num_iterations`` (static) TRPO iterations; metrics are ``[num_iterations]`` arrays.
        ``offline`` (static): the latest batch is a dataset, not deployment 1's uniform-random
        batch (``trpo.kl_budget_states='max_learned'``)."""
        state, (key,) = _split(state, 1)
        start_obs, start_mask = self._start_pool(state)
        # trpo.kl_budget_decay: deployment k's budget is kl_budget * decay^(k-1) (the collect
        # before this improve, or offline the insert, has counted deployment k already).
        past = jnp.maximum(state.deployment - 1, 0).astype(jnp.float32)
        trpo_hp = hp.trpo.replace(kl_budget=hp.trpo.kl_budget * hp.trpo.kl_budget_decay ** past)
        # imagine.warmup_horizon caps the paths of deployments 1 .. warmup_deployments only.
        warm = state.deployment <= hp.imagine.warmup_deployments
        imagine_hp = hp.imagine.replace(
            warmup_horizon=jnp.where(warm, hp.imagine.warmup_horizon, 0).astype(jnp.int32))
        hp = hp.replace(trpo=trpo_hp, imagine=imagine_hp)
        # max_learned: the latest batch counts only when a learned policy collected it (not the
        # uniform-random batch of an online run's first deployment; offline: the dataset's).
        kl_on = jnp.asarray(True) if offline else state.deployment > 1
        learner, m = self.opt.improve(state.learner, state.dynamics, hp, key, num_iterations,
                                      start_obs, start_mask, self._kl_states(state, key), kl_on)
        return state.replace(learner=learner), m

    # -- 5. evaluation -----------------------------------------------------------------------------
    def evaluate(self, state: RunState, hp: HParams) -> tuple[RunState, Metrics]:
        """Deterministic (mean-action) real episodes; the state only advances its key."""
        s = self.static
        horizon = s.imagine.horizon if s.eval.model_return else None
        evaluator = make_evaluator(self.task, self.policy.act_deterministic, s.eval.num_episodes,
                                   prefix_steps=horizon)
        state, (key,) = _split(state, 1)
        m = evaluator(state.learner.policy, key)
        if s.eval.model_return:  # the same episodes' first H steps in the model (own key)
            model_eval = make_model_evaluator(self.task, self.dynamics, self.policy,
                                              horizon=horizon,
                                              num_episodes=s.eval.num_episodes,
                                              member_sampling=s.imagine.member_sampling)
            model_returns, _ = model_eval(state.dynamics, state.learner.policy,
                                          hp.dynamics.num_active, jax.random.fold_in(key, 1))
            m["model_return_mean"] = jnp.mean(model_returns)
            m["model_gap"] = m["model_return_mean"] - m["prefix_return_mean"]
        if s.eval.member_rollouts > 0:
            m["model_return_min"] = self._member_min(state, hp)
        return state, {f"eval/{k}": v for k, v in m.items()}

    def _member_min(self, state: RunState, hp: HParams) -> jax.Array:
        """``[]``: the policy's imagined return under its most pessimistic active member, from
        ``eval.member_rollouts`` reset states drawn from a fixed key (the same states at every
        evaluation, so checkpoints compare on common random numbers)."""
        s = self.static
        member_eval = make_member_evaluator(self.task, self.dynamics, self.policy,
                                            horizon=s.imagine.horizon,
                                            num_rollouts=s.eval.member_rollouts)
        returns = member_eval(state.dynamics, state.learner.policy,
                              jax.random.key(_MEMBER_EVAL_SEED))                   # [E]
        active = jnp.arange(returns.shape[0]) < hp.dynamics.num_active
        return jnp.min(jnp.where(active, returns, jnp.inf))


def make_phases(static: StaticConfig, task=None, capacity: int | None = None,
                max_segments: int | None = None) -> Phases:
    """Builds the phase functions for ``static`` (the task is made from it unless given)."""
    if task is None:
        task = make_task(static.task, backend=static.backend, episode_length=static.episode_length)
    # dynamics.reward_model "auto": the task's analytic functions, or learned heads without them.
    dyn_cfg = resolve_reward_model(static.dynamics, task.analytic, task.name)
    dynamics = make_dynamics(task.obs_size, task.action_size, dyn_cfg)
    policy = make_policy(PolicyConfig(obs_dim=task.obs_size, act_dim=task.action_size,
                                      hidden_sizes=static.policy.hidden_sizes,
                                      init_seed=static.policy.seed_or_none))
    bc = make_bc(policy, static.bc)
    opt = make_policy_optimizer(static, task, dynamics, policy)
    capacity = static.buffer_capacity if capacity is None else capacity
    max_segments = static.deploy.num_deployments if max_segments is None else max_segments
    return Phases(static=static, task=task, dynamics=dynamics, policy=policy, bc=bc, opt=opt,
                  capacity=capacity, max_segments=max_segments)
