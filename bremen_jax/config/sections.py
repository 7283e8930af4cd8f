"""``StaticConfig`` and ``HParams``, nested exactly like the config file, derived from the schema.

``split(cfg)`` gives ``static.imagine.horizon``, ``static.trpo.iterations``, ``hp.trpo.target_kl``,
``hp.imagine.explore_sigma``, ...: the name a user types is the name the code reads. Static sections
are frozen, hashable dataclasses (a jit cache key); traced sections are ``flax.struct`` pytrees of
float32/int32 scalars (``[R]`` arrays in a sweep). ``seed`` and ``checkpoint.*`` (host fields) are in
neither.

Each section class lists its schema fields by hand (readable, typed) with the schema's defaults; an
import-time check keeps the classes and the schema in step. Constructing a static section checks its
schema fields with :func:`~bremen_jax.config.checks.check_value` (the same rules as a config file), so
hand-built configs in tests and notebooks are checked too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from bremen_jax.config.checks import check_value, validate
from bremen_jax.config.schema import (PRECISIONS, SCHEMA, SECTIONS, STATIC, TRACED, ConfigError,
                                      fields_of)


def _d(name: str) -> Any:
    """The schema default of ``name`` (the one set of defaults)."""
    return SCHEMA[name].default


class _Static:
    """Mixin of the static sections: checks (and types) their schema fields on construction."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields_of(self.SECTION, STATIC):
            object.__setattr__(self, f.leaf, check_value(f.name, getattr(self, f.leaf)))


_DTYPES = {float: jnp.float32, int: jnp.int32}


class _Traced:
    """Mixin of the traced sections: ``create(**python_values)`` -> checked float32/int32 leaves."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def create(cls, *args: Any, **values: Any):
        """Builds the section from Python numbers (schema defaults for the missing ones), checked.

        Positional arguments fill the fields in order (``BCHParams.create(2e-3)``).
        """
        known = {f.leaf: f for f in fields_of(cls.SECTION, TRACED)}
        if len(args) > len(known):
            raise ConfigError(f"{cls.__name__}.create takes at most {len(known)} positional "
                              f"arguments ({', '.join(known)}), got {len(args)}")
        values = {**dict(zip(known, args)), **values}
        for leaf in values:
            if leaf not in known:
                raise ConfigError(f"{cls.__name__} has no traced field {leaf!r}; "
                                  f"fields: {sorted(known)}")
        return cls(**{leaf: jnp.asarray(check_value(f.name, values.get(leaf, f.default)),
                                        _DTYPES[f.type]) for leaf, f in known.items()})


# ------------------------------------------------------------------------------------ dynamics
@dataclasses.dataclass(frozen=True)
class DynamicsConfig(_Static):
    """Static settings of the dynamics ensemble (config section ``dynamics``). Hashable.

    The last five attributes are not config fields: ``precision`` is derived from the top-level
    ``precision`` (``"default"`` -> ``None``), the others are fixed by the original's code.
    """

    SECTION: ClassVar[str] = "dynamics"
    num_members: int = _d("dynamics.num_members")
    hidden_sizes: tuple[int, ...] = _d("dynamics.hidden_sizes")
    batch_size: int = _d("dynamics.batch_size")
    max_epochs: int = _d("dynamics.max_epochs")
    eval_every: int = _d("dynamics.eval_every")
    patience: int = _d("dynamics.patience")
    restore_best: bool = _d("dynamics.restore_best")
    val_fraction: float = _d("dynamics.val_fraction")
    val_split: str = _d("dynamics.val_split")
    reward_model: str = _d("dynamics.reward_model")
    done_threshold: float = _d("dynamics.done_threshold")
    obs_clip: float = 1e5               # predictions clipped to +-obs_clip
    activation: str = "relu"
    precision: str | None = _d("precision")  # matmul precision of the MLPs
    val_drop_last: bool = True          # original: validation over full batches only
    eval_chunk: int = 4096              # rows per forward chunk in validation (memory bound only)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.obs_clip > 0:
            raise ConfigError(f"DynamicsConfig.obs_clip must be > 0, got {self.obs_clip!r}")
        if not (isinstance(self.eval_chunk, int) and self.eval_chunk > 0):
            raise ConfigError(f"DynamicsConfig.eval_chunk must be > 0, got {self.eval_chunk!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"DynamicsConfig.precision must be None or one of "
                              f"{list(PRECISIONS)}, got {self.precision!r}")


@flax.struct.dataclass
class DynamicsHParams(_Traced):
    """Traced dynamics hyperparameters (``hp.dynamics``); vmappable, never recompile.

    Attributes:
        learning_rate: ``[]`` float32 Adam learning rate.
        weight_decay: ``[]`` float32 ``c`` of the L2 term ``c / N_train · Σ_hidden ½‖W‖²``.
        num_active: ``[]`` int32; members ``[0, num_active)`` are fitted, the others are left
            unchanged by ``Dynamics.fit`` and must not be used for prediction.
    """

    SECTION: ClassVar[str] = "dynamics"
    learning_rate: jax.Array
    weight_decay: jax.Array
    num_active: jax.Array


# ------------------------------------------------------------------------------ policy, bc
@dataclasses.dataclass(frozen=True)
class PolicyNetConfig(_Static):
    """Config section ``policy``: widths and normc seed (``models.policy.PolicyConfig`` adds the
    task's observation and action sizes)."""

    SECTION: ClassVar[str] = "policy"
    hidden_sizes: tuple[int, ...] = _d("policy.hidden_sizes")
    init_seed: int = _d("policy.init_seed")

    @property
    def seed_or_none(self) -> int | None:
        """The fixed init seed, or ``None`` (negative ``init_seed``: derive from the run key)."""
        return None if self.init_seed < 0 else self.init_seed


@dataclasses.dataclass(frozen=True)
class BCConfig(_Static):
    """Static behaviour-cloning settings (config section ``bc``)."""

    SECTION: ClassVar[str] = "bc"
    batch_size: int = _d("bc.batch_size")
    num_steps: int = _d("bc.num_steps")
    data: str = _d("bc.data")
    reinit: bool = _d("bc.reinit")
    reset_optimizer: bool = _d("bc.reset_optimizer")


@flax.struct.dataclass
class BCHParams(_Traced):
    """Traced BC hyperparameters (``hp.bc``). ``learning_rate``: ``[]`` float32."""

    SECTION: ClassVar[str] = "bc"
    learning_rate: jax.Array


# ------------------------------------------------------------------------------ imagine
@dataclasses.dataclass(frozen=True)
class ImagineConfig(_Static):
    """Static imagined-rollout settings (config section ``imagine``)."""

    SECTION: ClassVar[str] = "imagine"
    horizon: int = _d("imagine.horizon")
    batch_size: int = _d("imagine.batch_size")
    member_sampling: str = _d("imagine.member_sampling")
    start_states: str = _d("imagine.start_states")
    exploration: str = _d("imagine.exploration")
    keep_partial_paths: bool = _d("imagine.keep_partial_paths")
    penalty: str = _d("imagine.penalty")

    @property
    def num_rollouts(self) -> int:
        """B: parallel imagined rollouts per TRPO iteration (= batch_size / horizon)."""
        return self.batch_size // self.horizon

    @property
    def reset_fraction(self) -> float:
        """Share of imagined start states drawn from the reset distribution when a start pool
        is used (``start_states='reset_latest'``: 0.5; ``'dataset'``/``'latest'``: 0)."""
        return 0.5 if self.start_states == "reset_latest" else 0.0


@flax.struct.dataclass
class ImagineHParams(_Traced):
    """Traced rollout hyperparameters (``hp.imagine``): ``explore_sigma`` and ``penalty_coef``
    (``imagine.penalty``'s lambda), ``[]`` float32; ``warmup_horizon`` and
    ``warmup_deployments``, ``[]`` int32: in deployments ``1 .. warmup_deployments`` imagined
    paths end after ``warmup_horizon`` steps (0: ``imagine.horizon``). The scan keeps its static
    length ``imagine.horizon``, so a shorter cap changes no shape and never recompiles; a column
    restarts a path when one ends and drops the rows of the path the scan cuts (see
    ``algo.imagine``)."""

    SECTION: ClassVar[str] = "imagine"
    explore_sigma: jax.Array
    penalty_coef: jax.Array
    warmup_horizon: jax.Array
    warmup_deployments: jax.Array


# ------------------------------------------------------------------------------ trpo
@dataclasses.dataclass(frozen=True)
class TRPOConfig(_Static):
    """Static TRPO settings (config section ``trpo``): trip counts and code-path switches.

    Attributes:
        cg_iters: conjugate-gradient iterations (original 10).
        ls_steps: number of line-search candidates, fractions ``ls_backtrack**k``,
            k = 0..ls_steps−1 (original 10).
        ls_backtrack: backtracking factor in (0, 1) (original 0.5).
        accept_ratio: accept a candidate whose improvement is > 0 and whose
            improvement / expected improvement is > this (original 0.1).
        ls_check_kl: also require a finite KL ≤ target_kl (the standard TRPO rule).
            The original does not check KL in the line search (False).
        fvp: ``"gauss_newton"`` (default): ``Jᵀ H_out J v`` with ``J`` the Jacobian of the
            policy outputs (mean, log σ) and ``H_out`` the Hessian of the mean KL in the
            outputs: one JVP and one VJP through the network per product. ``"hessian"``: the
            Hessian-vector product of the mean KL (forward-over-reverse, as the original's
            ``tf.gradients`` of ``grad·v``), about 1.7x the matmuls. At the linearisation point
            (π = π_old) the two are the same matrix, the Fisher, so they agree to float rounding.
        shs_from_cg: ``½xᵀFx`` from the ``F x`` that CG accumulates (default) instead of one more
            Fisher-vector product after CG (the original; ``False``). Equal up to rounding.
        line_search: ``"sequential"`` (default): candidates k = 0, 1, ... in a ``while_loop``
            that stops at the first acceptable one, as the original's Python loop. ``"parallel"``:
            all ``ls_steps`` candidates at once (``vmap``), the same choice, constant cost.
        ratio_std: the σ under which TRPO scores the imagined actions (likelihood ratio, KL,
            Fisher): ``"policy"`` (the original: the policy's own σ, at its floor e⁻⁵ after BC,
            although the actions were drawn as mean + explore_sigma·N(0, 1)), ``"sampling"``
            (explore_sigma: the distribution the actions came from; σ then gets no gradient) or
            ``"floor"`` (max(σ, explore_sigma)). See :func:`bremen_jax.algo.policy_opt.scoring_dist`.
        baseline, bootstrap_truncation: the value baseline and GAE options (``algo/policy_opt``).
        validation: ``"none"`` (the original) or ``"members"``: after each chunk the policy's
            imagined return under each active member on its own (``validation_rollouts`` start
            states, mean actions, ``imagine.horizon`` steps) is compared with the chunk's start;
            fewer than ``hp.trpo.validation_ratio`` of the members improved -> the chunk's policy
            update is rolled back (ME-TRPO's validation, as a rollback rather than a stop).
        kl_budget_states: where ``hp.trpo.kl_budget`` measures the policy's KL to the clone:
            ``"imagined"`` (the iteration's imagined batch; H steps from the start states),
            ``"latest"`` (``imagine.batch_size`` states of the latest real batch, drawn once per
            call: the deployed policy's whole episodes), ``"max"`` (the larger) or
            ``"max_learned"`` (``max`` where a learned policy collected the latest batch; the
            imagined KL alone on an online run's uniform-random first batch).
        iterations, chunk: TRPO iterations per deployment, and per jitted call.
        cg_residual_tol: CG stops updating once r·r < tol (original 1e-10; not a config field).
    """

    SECTION: ClassVar[str] = "trpo"
    cg_iters: int = _d("trpo.cg_iters")
    ls_steps: int = _d("trpo.ls_steps")
    ls_backtrack: float = _d("trpo.ls_backtrack")
    accept_ratio: float = _d("trpo.accept_ratio")
    ls_check_kl: bool = _d("trpo.ls_check_kl")
    ratio_std: str = _d("trpo.ratio_std")
    fvp: str = _d("trpo.fvp")
    shs_from_cg: bool = _d("trpo.shs_from_cg")
    line_search: str = _d("trpo.line_search")
    baseline: str = _d("trpo.baseline")
    bootstrap_truncation: bool = _d("trpo.bootstrap_truncation")
    validation: str = _d("trpo.validation")
    validation_rollouts: int = _d("trpo.validation_rollouts")
    kl_budget_states: str = _d("trpo.kl_budget_states")
    iterations: int = _d("trpo.iterations")
    chunk: int = _d("trpo.chunk")
    cg_residual_tol: float = 1e-10     # CG stops updating once r·r < tol

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.cg_residual_tol >= 0:
            raise ConfigError(f"TRPOConfig.cg_residual_tol must be >= 0, "
                              f"got {self.cg_residual_tol!r}")


@flax.struct.dataclass
class TRPOHParams(_Traced):
    """Traced TRPO / return hyperparameters (``hp.trpo``), ``[]`` float32 each.

    Attributes:
        target_kl: trust-region size δ. cg_damping: Fisher damping. gamma: discount.
        lam: GAE λ. kl_penalty: KL-to-behaviour reward penalty α.
        value_learning_rate: Adam learning rate of the MLP value function.
        validation_ratio: fraction of active members that must see an improvement
            (``trpo.validation = "members"``).
        kl_budget: skip TRPO updates while the policy's mean KL to the clone (under
            ``trpo.ratio_std``'s σ) exceeds it; 0 = no budget.
        kl_budget_decay: the budget of deployment ``k`` (1-based) is
            ``kl_budget * kl_budget_decay ** (k - 1)``; 1 = the same budget in every deployment.
    """

    SECTION: ClassVar[str] = "trpo"
    target_kl: jax.Array
    cg_damping: jax.Array
    gamma: jax.Array
    lam: jax.Array
    kl_penalty: jax.Array
    value_learning_rate: jax.Array
    validation_ratio: jax.Array
    kl_budget: jax.Array
    kl_budget_decay: jax.Array


@flax.struct.dataclass
class ValueHParams:
    """Traced MLP value-function hyperparameters. ``learning_rate``: ``[]`` float32."""

    learning_rate: jax.Array

    @classmethod
    def create(cls, learning_rate: float = _d("trpo.value_learning_rate")) -> "ValueHParams":
        lr = check_value("trpo.value_learning_rate", learning_rate)
        return cls(learning_rate=jnp.asarray(lr, jnp.float32))


# ------------------------------------------------------------------------------ deploy, eval
@dataclasses.dataclass(frozen=True)
class DeployConfig(_Static):
    """Static deployment settings (config section ``deploy``)."""

    SECTION: ClassVar[str] = "deploy"
    num_deployments: int = _d("deploy.num_deployments")
    batch_size: int = _d("deploy.batch_size")
    num_envs: int = _d("deploy.num_envs")

    @property
    def collect_steps(self) -> int:
        """Steps each of the ``num_envs`` real environments takes per deployment."""
        return self.batch_size // self.num_envs


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Static):
    """Static evaluation settings (config section ``eval``).

    Attributes:
        num_episodes: deterministic real episodes per evaluation.
        model_return: also play their first ``imagine.horizon`` steps in the learned model
            (``algo/imagine.make_model_evaluator``): ``eval/model_return_mean``, the real
            episodes' return over those steps ``eval/prefix_return_mean`` and ``eval/model_gap``
            (model minus real).
        member_rollouts: > 0: the policy's imagined return under each active member on its
            own from this many reset states, the same at every evaluation of a run
            (``algo/imagine.make_member_evaluator``): ``eval/model_return_min``, the lowest
            member's (pessimistic; what ``experiments.offline_table`` picks a checkpoint by).
    """

    SECTION: ClassVar[str] = "eval"
    num_episodes: int = _d("eval.num_episodes")
    model_return: bool = _d("eval.model_return")
    member_rollouts: int = _d("eval.member_rollouts")


# ------------------------------------------------------------------------------ the two trees
@dataclasses.dataclass(frozen=True)
class StaticConfig(_Static):
    """Shapes, trip counts and code paths, nested like the config file. Hashable (a jit cache key)."""

    task: str = _d("task")
    backend: str = _d("backend")
    episode_length: int = _d("episode_length")
    precision: str = _d("precision")
    compile_effort: str = _d("compile_effort")
    dynamics: DynamicsConfig = DynamicsConfig()
    policy: PolicyNetConfig = PolicyNetConfig()
    bc: BCConfig = BCConfig()
    imagine: ImagineConfig = ImagineConfig()
    trpo: TRPOConfig = TRPOConfig()
    deploy: DeployConfig = DeployConfig()
    eval: EvalConfig = EvalConfig()

    @property
    def buffer_capacity(self) -> int:
        """Real transitions over all deployments (``deploy.batch_size x deploy.num_deployments``)."""
        return self.deploy.batch_size * self.deploy.num_deployments

    @property
    def val_blocks(self) -> int:
        """Blocks of a collected batch that each get the ordered validation split: the
        ``deploy.num_envs`` envs with ``dynamics.val_split='per_env'``, else 1 (the original)."""
        return self.deploy.num_envs if self.dynamics.val_split == "per_env" else 1

    @property
    def num_chunks(self) -> int:
        """Jitted TRPO calls (evaluation periods) per deployment (``trpo.iterations / trpo.chunk``)."""
        return self.trpo.iterations // self.trpo.chunk


@flax.struct.dataclass
class HParams:
    """Tunables, traced, nested like the config file; leaves float32/int32 (``[R]`` in a sweep)."""

    dynamics: DynamicsHParams
    bc: BCHParams
    imagine: ImagineHParams
    trpo: TRPOHParams


STATIC_SECTIONS = {"dynamics": DynamicsConfig, "policy": PolicyNetConfig, "bc": BCConfig,
                   "imagine": ImagineConfig, "trpo": TRPOConfig, "deploy": DeployConfig,
                   "eval": EvalConfig}
TRACED_SECTIONS = {"dynamics": DynamicsHParams, "bc": BCHParams, "imagine": ImagineHParams,
                   "trpo": TRPOHParams}


def _check_classes_match_schema() -> None:
    """Every static/traced schema field is an attribute of its section class (import-time check)."""
    for section in ("",) + SECTIONS:
        for kind, classes in ((STATIC, STATIC_SECTIONS), (TRACED, TRACED_SECTIONS)):
            wanted = {f.leaf for f in fields_of(section, kind)}
            cls = StaticConfig if (section, kind) == ("", STATIC) else classes.get(section)
            have = {f.name for f in dataclasses.fields(cls)} if cls else set()
            if not wanted <= have:
                raise AssertionError(f"{section or 'top level'} {kind} fields {wanted - have} have "
                                     f"no attribute in the section classes")


_check_classes_match_schema()


def split(cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> tuple[StaticConfig, HParams]:
    """Validates ``cfg`` and splits it into ``(StaticConfig, HParams)`` by the schema's kinds."""
    typed = validate(cfg)

    def values(section: str, kind: str) -> dict[str, Any]:
        return {f.leaf: typed[f.name] for f in fields_of(section, kind)}

    precision = None if typed["precision"] == "default" else typed["precision"]
    sections = {name: cls(**values(name, STATIC)) for name, cls in STATIC_SECTIONS.items()
                if name != "dynamics"}
    static = StaticConfig(**values("", STATIC), **sections,
                          dynamics=DynamicsConfig(**values("dynamics", STATIC), precision=precision))
    hp = HParams(**{name: cls.create(**values(name, TRACED))
                    for name, cls in TRACED_SECTIONS.items()})
    return static, hp
