"""Policy optimisation on imagined rollouts: one TRPO iteration and a scanned chunk of them (§5).

One iteration = imagined rollout (:mod:`bremen_jax.algo.imagine`) -> baseline values -> optional
KL-to-behaviour value penalty -> GAE -> advantage standardisation -> TRPO step
(:func:`bremen_jax.algo.trpo.trpo_step`) -> baseline refit on the batch *after* the update (the
original refits after each update so the new fit serves the next iteration).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp

from bremen_jax.algo import baseline as baseline_lib
from bremen_jax.algo import returns as returns_lib
from bremen_jax.algo.imagine import (ImaginedBatch, make_imagined_rollout,
                                     make_member_evaluator)
from bremen_jax.algo.natural_gradient import ROW_CHUNK, row_chunked
from bremen_jax.algo.trpo import trpo_step
from bremen_jax.config import HParams, StaticConfig, ValueHParams
from bremen_jax.envs import Task
from bremen_jax.models import distributions
from bremen_jax.models.dynamics import Dynamics
from bremen_jax.models.policy import Policy, PolicyParams, dist_net, normalize
from bremen_jax.types import Metrics, PRNGKey


@flax.struct.dataclass
class LearnerState:
    """What TRPO carries between iterations.

    Attributes:
        policy: target policy (network + observation normaliser).
        behavior: the behaviour-cloned policy (for the KL penalty and its logging).
        baseline: :class:`~bremen_jax.algo.baseline.LinearBaseline` coefficients.
        value: MLP value state (``baseline='mlp'``) or ``None``.
    """

    policy: PolicyParams
    behavior: PolicyParams
    baseline: baseline_lib.LinearBaseline
    value: Optional[baseline_lib.ValueState] = None


@dataclasses.dataclass(frozen=True, eq=False)
class PolicyOptimizer:
    """Static pieces of the TRPO-on-imagination loop; build with :func:`make_policy_optimizer`."""

    static: StaticConfig
    task: Task
    dynamics: Dynamics
    policy: Policy
    value_fn: Optional[baseline_lib.ValueFunction]  # None: linear feature baseline
    rollout: Callable[..., ImaginedBatch]           # make_imagined_rollout(...)
    member_eval: Optional[Callable] = None          # make_member_evaluator(...) (validation)

    def init_learner(self, policy_params: PolicyParams, behavior: PolicyParams,
                     key: PRNGKey) -> LearnerState:
        obs_dim = self.task.obs_size
        value = self.value_fn.init(key) if self.value_fn is not None else None
        return LearnerState(policy=policy_params, behavior=behavior,
                            baseline=baseline_lib.init_linear_baseline(obs_dim), value=value)

    def _values(self, learner: LearnerState, obs_hat: jax.Array, t: jax.Array) -> jax.Array:
        if self.value_fn is not None:
            return self.value_fn.predict(learner.value, obs_hat)
        feats = baseline_lib.linear_features(obs_hat, t)
        return baseline_lib.predict_linear(learner.baseline, feats)

    def imagine(self, learner: LearnerState, dyn_state, hp: HParams, key: PRNGKey, start_obs=None,
                start_mask=None) -> ImaginedBatch:
        """The imagined batch ``[H, B, ...]`` of one iteration; ``hp.imagine.warmup_horizon`` > 0
        caps its paths (the caller sets it to 0 outside the warm-up deployments)."""
        return self.rollout(dyn_state, learner.policy, hp.imagine.explore_sigma,
                            hp.dynamics.num_active, key, start_obs, start_mask,
                            hp.imagine.penalty_coef, hp.imagine.warmup_horizon)

    def advantages(self, learner: LearnerState, batch: ImaginedBatch, hp: HParams):
        """Baseline values, KL penalty, GAE and standardisation.

        Returns ``(adv_std [H, B], value_targets [H, B], obs_hat [H, B, o], metrics)``.
        """
        s = self.static
        norm = learner.policy.obs_norm
        obs_hat = normalize(norm, batch.obs)
        next_hat = normalize(norm, batch.next_obs)
        values = self._values(learner, obs_hat, batch.t)
        next_values = self._values(learner, next_hat, batch.t + 1)
        kl_behavior, kl_scored = self._kl_rows(learner, batch.obs, hp)
        rewards = returns_lib.penalized_rewards(batch.reward, kl_behavior, hp.trpo.kl_penalty)
        adv, targets = returns_lib.gae(rewards, values, next_values, batch.terminated,
                                       batch.path_end, batch.mask, hp.trpo.gamma, hp.trpo.lam,
                                       bootstrap_truncation=s.trpo.bootstrap_truncation)
        adv_std = returns_lib.standardize(adv, batch.mask)
        n_rows = jnp.maximum(jnp.sum(batch.mask), 1.0)
        n_paths = jnp.maximum(jnp.sum(batch.path_end * batch.mask), 1.0)
        metrics = {
            "imagined_return": jnp.sum(batch.reward * batch.mask) / n_paths,
            "imagined_paths": jnp.sum(batch.path_end * batch.mask),
            "imagined_rows": jnp.sum(batch.mask),
            "kl_to_behavior": jnp.sum(kl_behavior * batch.mask) / n_rows,
            "kl_to_behavior_scored": jnp.sum(kl_scored * batch.mask) / n_rows,
            "advantage_mean": jnp.sum(adv * batch.mask) / n_rows,
        }
        if batch.disagreement is not None:  # imagine.penalty: the reward above is penalised
            total = jnp.sum(batch.disagreement * batch.mask)
            metrics["imagined_disagreement"] = total / n_rows
            metrics["imagined_penalty"] = hp.imagine.penalty_coef * total / n_paths
        return adv_std, targets, obs_hat, metrics

    def update(self, learner: LearnerState, batch: ImaginedBatch, adv_std, targets, obs_hat,
               hp: HParams, key: PRNGKey) -> tuple[LearnerState, Metrics]:
        """TRPO step on the batch, then the baseline refit (for the next iteration)."""
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731  [H, B, ...] -> [H*B, ...]
        norm = learner.policy.obs_norm
        dist_fn = scoring_dist(lambda net, o: dist_net(net, norm, o),
                               self.static.trpo.ratio_std, hp.imagine.explore_sigma)
        new_net, trpo_metrics = trpo_step(dist_fn, learner.policy.net, flat(batch.obs),
                                          flat(batch.action), flat(adv_std), flat(batch.mask),
                                          self.static.trpo, hp.trpo)
        mask_flat = flat(batch.mask).astype(bool)
        if self.value_fn is not None:
            value, m_value = self.value_fn.fit(learner.value, flat(obs_hat), flat(targets),
                                               mask_flat, ValueHParams(hp.trpo.value_learning_rate),
                                               key)
            new_baseline, rejected = learner.baseline, m_value["nonfinite"]
        else:
            new_baseline, rejected = baseline_lib.refit_linear_checked(
                learner.baseline, obs_hat, batch.t, targets, batch.mask)
            value = learner.value
        learner = learner.replace(policy=learner.policy.replace(net=new_net),
                                  baseline=new_baseline, value=value)
        metrics = {f"trpo/{k}": v for k, v in trpo_metrics.items()}
        return learner, {**metrics, "baseline/nonfinite": rejected.astype(jnp.int32)}

    def _kl_rows(self, learner: LearnerState, obs: jax.Array, hp: HParams):
        """``(kl [...], kl_scored [...])`` per row of ``obs [..., o]``: KL(π ‖ clone) under the
        learned σ (the penalty's) and under ``trpo.ratio_std``'s σ (the one TRPO scores actions
        with, which the KL budget checks)."""
        r, sigma = self.static.trpo.ratio_std, hp.imagine.explore_sigma
        mean, log_std = _dist_rows(learner.policy, obs)
        b_mean, b_log_std = _dist_rows(learner.behavior, obs)
        kl = distributions.kl(mean, log_std, b_mean, b_log_std)
        kl_scored = distributions.kl(mean, scored_log_std(log_std, r, sigma),
                                     b_mean, scored_log_std(b_log_std, r, sigma))
        return kl, kl_scored

    def kl_scored(self, learner: LearnerState, obs: jax.Array, hp: HParams) -> jax.Array:
        """``[]``: mean KL from the policy to the clone over ``obs [N, o]`` under
        ``trpo.ratio_std``'s σ (the ``kl_to_behavior_scored`` of the imagined batch, here on
        any states)."""
        return jnp.mean(self._kl_rows(learner, obs, hp)[1])

    def iteration(self, learner: LearnerState, dyn_state, hp: HParams, key: PRNGKey,
                  start_obs=None, start_mask=None, kl_obs=None,
                  kl_obs_on=True) -> tuple[LearnerState, Metrics]:
        """One TRPO iteration on a fresh imagined batch. Pure; jit it (or scan it).

        ``kl_obs [N, o]`` (``trpo.kl_budget_states`` other than ``imagined``): real states on
        which the KL budget is also measured (metric ``kl_to_behavior_latest``); ``kl_obs_on``
        (``[]`` bool, ``max_learned``) False: the budget checks the imagined KL only.
        """
        key_roll, key_value = jax.random.split(key)
        batch = self.imagine(learner, dyn_state, hp, key_roll, start_obs, start_mask)
        adv_std, targets, obs_hat, m_adv = self.advantages(learner, batch, hp)
        new, m_upd = self.update(learner, batch, adv_std, targets, obs_hat, hp, key_value)
        # trpo.kl_budget: past the budget the policy stays where it is (the baseline still refits).
        # Measured on the policy this iteration started from, as the imagined batch's KL is.
        budget = hp.trpo.kl_budget
        kl = m_adv["kl_to_behavior_scored"]
        where = self.static.trpo.kl_budget_states
        if where != "imagined":
            if kl_obs is None:
                raise ValueError(f"trpo.kl_budget_states={where!r} needs kl_obs (real states)")
            m_adv["kl_to_behavior_latest"] = self.kl_scored(learner, kl_obs, hp)
            if where == "latest":
                kl = m_adv["kl_to_behavior_latest"]
            else:
                kl_max = jnp.maximum(kl, m_adv["kl_to_behavior_latest"])
                kl = kl_max if where == "max" else jnp.where(kl_obs_on, kl_max, kl)
        over = (budget > 0) & (kl > budget)
        policy = jax.tree.map(lambda n, o: jnp.where(over, o, n), new.policy, learner.policy)
        m_upd["trpo/over_kl_budget"] = over.astype(jnp.int32)
        return new.replace(policy=policy), {**m_adv, **m_upd}

    def improve(self, learner: LearnerState, dyn_state, hp: HParams, key: PRNGKey,
                num_iterations: int, start_obs=None, start_mask=None,
                kl_obs=None, kl_obs_on=True) -> tuple[LearnerState, Metrics]:
        """``num_iterations`` (static) TRPO iterations as one ``lax.scan``; metrics ``[N]``.

        The per-iteration rejection flags become running counts over the scan (the last entry
        is the call's total): ``nonfinite/trpo_steps`` (TRPO steps rejected, old params kept)
        and ``nonfinite/baseline_fits`` (baseline / value fits rejected, old fit kept).
        """

        def body(carry, key_it):
            return self.iteration(carry, dyn_state, hp, key_it, start_obs, start_mask, kl_obs,
                                  kl_obs_on)

        start = learner
        learner, m = jax.lax.scan(body, learner, jax.random.split(key, num_iterations))
        m["nonfinite/trpo_steps"] = jnp.cumsum(m.pop("trpo/nonfinite"))
        m["nonfinite/baseline_fits"] = jnp.cumsum(m.pop("baseline/nonfinite"))
        if self.static.trpo.validation == "members":
            learner, m_val = self.validate(start, learner, dyn_state, hp,
                                           jax.random.fold_in(key, 1), start_obs, start_mask)
            m.update({k: jnp.broadcast_to(v, (num_iterations,)) for k, v in m_val.items()})
        return learner, m

    def validate(self, start: LearnerState, learner: LearnerState, dyn_state, hp: HParams,
                 key: PRNGKey, start_obs=None, start_mask=None) -> tuple[LearnerState, Metrics]:
        """ME-TRPO's policy validation as a rollback (``trpo.validation = "members"``).

        The imagined return of ``start.policy`` and of ``learner.policy`` under each member on
        its own (the same start states: common random numbers); when fewer than
        ``hp.trpo.validation_ratio`` of the active members see an improvement, the policy
        goes back to ``start.policy`` (the baseline keeps its refits). Metrics (scalars):
        ``validation/improved_fraction``, ``validation/rolled_back`` (0/1),
        ``validation/return_before`` and ``validation/return_after`` (mean over active members).
        """
        E = self.dynamics.cfg.num_members
        active = (jnp.arange(E) < hp.dynamics.num_active).astype(jnp.float32)
        n_active = jnp.maximum(jnp.sum(active), 1.0)
        before = self.member_eval(dyn_state, start.policy, key, start_obs, start_mask)  # [E]
        after = self.member_eval(dyn_state, learner.policy, key, start_obs, start_mask)
        frac = jnp.sum((after > before) * active) / n_active
        keep = frac >= hp.trpo.validation_ratio
        policy = jax.tree.map(lambda new, old: jnp.where(keep, new, old), learner.policy,
                              start.policy)
        metrics = {"validation/improved_fraction": frac,
                   "validation/rolled_back": 1 - keep.astype(jnp.int32),
                   "validation/return_before": jnp.sum(before * active) / n_active,
                   "validation/return_after": jnp.sum(after * active) / n_active}
        return learner.replace(policy=policy), metrics


def scoring_dist(dist_fn: Callable, ratio_std: str, sigma: jax.Array) -> Callable:
    """The distribution TRPO scores the imagined actions under (``trpo.ratio_std``).

    The actions were drawn as ``mean + sigma * N(0, 1)`` (``imagine.exploration='constant'``).
    ``"policy"`` (original) scores them under the policy's own ``N(mean, exp(log_std))``: after BC
    ``log_std`` sits at its floor −5, so ``log π(a)`` of a draw ``sigma / e⁻⁵ ≈ 15`` standard
    deviations out is ~ −110 per dimension and the likelihood ratios explode. ``"sampling"``
    scores them under ``N(mean, sigma)``, the distribution they came from (ratio, KL and Fisher
    are then of the mean only: KL = ½‖Δmean‖² / sigma²); ``"floor"`` under
    ``N(mean, max(exp(log_std), sigma))``.

    Args:
        dist_fn: ``(net, obs [N, o]) -> (mean [N, a], log_std [N, a])``.
        ratio_std: ``"policy" | "sampling" | "floor"`` (static).
        sigma: ``[]`` the exploration sigma (traced; > 0 unless ``"policy"``).
    Returns:
        a ``dist_fn`` of the same signature.
    """
    _check_ratio_std(ratio_std)
    if ratio_std == "policy":
        return dist_fn

    def scored(net, obs):
        mean, log_std = dist_fn(net, obs)
        return mean, scored_log_std(log_std, ratio_std, sigma)

    return scored


def scored_log_std(log_std: jax.Array, ratio_std: str, sigma: jax.Array) -> jax.Array:
    """The log σ TRPO scores actions with (``trpo.ratio_std``; see :func:`scoring_dist`), from
    the policy's own ``log_std [..., a]`` and the exploration ``sigma`` ``[]``."""
    _check_ratio_std(ratio_std)
    if ratio_std == "policy":
        return log_std
    log_sigma = jnp.log(sigma).astype(log_std.dtype)
    if ratio_std == "sampling":
        return jnp.broadcast_to(log_sigma, log_std.shape)
    return jnp.maximum(log_std, log_sigma)


def _check_ratio_std(ratio_std: str) -> None:
    if ratio_std not in ("policy", "sampling", "floor"):
        raise ValueError(f"ratio_std must be 'policy', 'sampling' or 'floor', got {ratio_std!r}")


def _dist_rows(policy: PolicyParams, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`dist_net` on ``obs [H, B, o]``, :data:`ROW_CHUNK` rows at a time (same numbers;
    the activations stay in cache). Returns ``(mean, log_std)``, each ``[H, B, a]``."""
    flat = obs.reshape((-1, obs.shape[-1]))
    dist_fn = row_chunked(lambda net, o: dist_net(net, policy.obs_norm, o), ROW_CHUNK)
    return jax.tree.map(lambda x: x.reshape(obs.shape[:-1] + x.shape[-1:]),
                        dist_fn(policy.net, flat))


def make_policy_optimizer(static: StaticConfig, task: Task, dynamics: Dynamics,
                          policy: Policy) -> PolicyOptimizer:
    """Builds the TRPO-on-imagination loop for a :class:`~bremen_jax.config.StaticConfig`."""
    im = static.imagine
    rollout = make_imagined_rollout(task, dynamics, policy, horizon=im.horizon,
                                    num_rollouts=im.num_rollouts,
                                    member_sampling=im.member_sampling,
                                    exploration=im.exploration,
                                    keep_partial_paths=im.keep_partial_paths,
                                    penalty=im.penalty,
                                    reset_fraction=im.reset_fraction)

    value_fn = None
    if static.trpo.baseline == "mlp":
        value_fn = baseline_lib.make_value(baseline_lib.ValueConfig(obs_dim=task.obs_size))
    member_eval = None
    if static.trpo.validation == "members":
        member_eval = make_member_evaluator(task, dynamics, policy, horizon=im.horizon,
                                            num_rollouts=static.trpo.validation_rollouts,
                                            reset_fraction=im.reset_fraction)
    return PolicyOptimizer(static=static, task=task, dynamics=dynamics, policy=policy,
                           value_fn=value_fn, rollout=rollout, member_eval=member_eval)
