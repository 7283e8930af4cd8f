"""The one declarative config schema: every field of a BREMEN config, as data.

Each row is a :class:`Field`: its dotted name (``section.name``, the name a user types and the name the
code reads), its *kind*, its type, its default, its constraint and a one-line doc. Everything else is
derived from this table: the default config (``bremen_jax/configs/default.py``), :func:`validate
<bremen_jax.config.checks.validate>`, :func:`split <bremen_jax.config.sections.split>`, the typed
setter and the "is this field static?" question asked by resume and sweeps.

Kinds:

* ``static``: sets a shape, a trip count or a code path; a new value recompiles (``StaticConfig``).
* ``traced``: a float32/int32 leaf of ``HParams``; vmapped by sweeps, never recompiles.
* ``host``: neither (the run seed, checkpointing): read by the driver on the host only.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

import ml_collections

STATIC, TRACED, HOST = "static", "traced", "host"
KINDS = (STATIC, TRACED, HOST)
BACKENDS = ("generalized", "positional", "spring", "mjx")
PRECISIONS = ("highest", "tensorfloat32", "bfloat16", "default")
COMPILE_EFFORTS = ("auto", "default", "light", "fast")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what was expected."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric interval; ``None`` = unbounded on that side. ``str`` is the message's wording."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        lo_ok = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        hi_ok = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return lo_ok and hi_ok

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return (f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                f"{')' if self.hi_open else ']'}")


POSITIVE = Range(0, None, lo_open=True)
NONNEG = Range(0, None)
OPEN_UNIT = Range(0, 1, lo_open=True, hi_open=True)     # (0, 1)
UNIT_NO_ZERO = Range(0, 1, lo_open=True)                 # (0, 1]
UNIT = Range(0, 1)                                       # [0, 1]
AT_LEAST_ONE = Range(1, None)
# Sane bounds of the traced hyperparameters (issue 13): a value outside them can only poison a run.
LEARNING_RATE = UNIT_NO_ZERO                             # (0, 1]
WEIGHT_DECAY = Range(0, 1e4)                             # [0, 10000]
TARGET_KL = Range(0, 10, lo_open=True)                   # (0, 10]
DAMPING = Range(0, 1e3)                                  # [0, 1000]
SIGMA = Range(0, 10)                                     # [0, 10]
PENALTY = Range(0, 1e4)                                  # [0, 10000]
BUDGET = Range(0, 1e6)                                   # [0, 1e6]
DECAY = Range(0, 10, lo_open=True)                       # (0, 10]


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field.

    Attributes:
        name: dotted name, ``"trpo.target_kl"`` (top-level fields have no dot).
        kind: ``static`` | ``traced`` | ``host``.
        type: ``bool``, ``int``, ``float``, ``str`` or ``tuple`` (a non-empty tuple of positive ints).
        default: the one default value.
        doc: one line.
        check: a :class:`Range` for numbers, or ``None``.
        choices: the accepted strings, or ``None``.
    """

    name: str
    kind: str
    type: type
    default: Any
    doc: str
    check: Range | None = None
    choices: tuple[str, ...] | None = None

    @property
    def section(self) -> str:
        """``"trpo"`` for ``"trpo.target_kl"``; ``""`` for a top-level field."""
        return self.name.rpartition(".")[0]

    @property
    def leaf(self) -> str:
        return self.name.rpartition(".")[2]


def _f(name, kind, type_, default, doc, check=None, choices=None) -> Field:
    return Field(name, kind, type_, default, doc, check, choices)


S, T, H = STATIC, TRACED, HOST
# The defaults are the paper's HalfCheetah settings (reference §8-§9); other configs override them.
FIELDS: tuple[Field, ...] = (
    _f("task", S, str, "halfcheetah", "task name (`bremen tasks` lists them)"),
    _f("backend", S, str, "generalized", "brax physics backend", choices=BACKENDS),
    _f("episode_length", S, int, 1000, "real-env episode length", POSITIVE),
    _f("seed", H, int, 0, "run seed (PRNG key); network inits use policy.init_seed"),
    _f("precision", S, str, "highest", "matmul precision", choices=PRECISIONS),
    _f("compile_effort", S, str, "auto", "XLA compile effort: default = XLA's options; light = "
       "LLVM -O1 and no CPU fusion emitters (~40% less compile on Brax-stepping programs at "
       "about their speed); fast = -O0 and no CPU fusion emitters (about half the compile; "
       "steps up to 5x slower, small TRPO iterations up to 4x); auto = light for the programs "
       "that step the physics on CPU, default for the rest (BREMEN_JAX_COMPILE and "
       "--fast-compile override it)", choices=COMPILE_EFFORTS),
    # dynamics
    _f("dynamics.num_members", S, int, 5, "ensemble size (maximum; see num_active)", POSITIVE),
    _f("dynamics.hidden_sizes", S, tuple, (1024, 1024), "MLP widths, ReLU"),
    _f("dynamics.batch_size", S, int, 1000, "minibatch size", POSITIVE),
    _f("dynamics.max_epochs", S, int, 200, "epochs per fit at most", POSITIVE),
    _f("dynamics.eval_every", S, int, 5, "validation every k epochs", POSITIVE),
    _f("dynamics.patience", S, int, 20, "stop when epoch - best_epoch >= patience", POSITIVE),
    _f("dynamics.restore_best", S, bool, False, "restore the best weights (original keeps the last)"),
    _f("dynamics.val_fraction", S, float, 0.15,
       "last fraction of every batch is validation (ordered)", OPEN_UNIT),
    _f("dynamics.val_split", S, str, "ordered",
       "where a collected batch's validation rows come from: ordered (original: the batch's "
       "last val_fraction, with parallel envs stored env by env the last ~val_fraction of the "
       "envs) | per_env (the last val_fraction of every env's steps, so every env's "
       "trajectories are in the training split; an offline dataset is always ordered)",
       choices=("ordered", "per_env")),
    _f("dynamics.learning_rate", T, float, 1e-3, "Adam learning rate", LEARNING_RATE),
    _f("dynamics.weight_decay", T, float, 1.0,
       "c in c*(1/N_train)*sum 0.5||W_hidden||^2 (original: json value ignored, c=1)",
       WEIGHT_DECAY),
    _f("dynamics.num_active", T, int, 5, "active members (<= num_members); the rest are masked out",
       POSITIVE),
    _f("dynamics.reward_model", S, str, "auto",
       "auto (the task's analytic reward/termination if it has them, else learned) | analytic | "
       "learned (reward and termination heads on the ensemble)",
       choices=("auto", "analytic", "learned")),
    _f("dynamics.done_threshold", S, float, 0.5,
       "learned termination fires when sigmoid(logit) > this", OPEN_UNIT),
    # policy
    _f("policy.hidden_sizes", S, tuple, (200, 200), "policy and BC MLP widths, ReLU"),
    _f("policy.init_seed", S, int, 1234,
       "fixed normc seed as the original; negative = derive from the run key"),
    # bc
    _f("bc.batch_size", S, int, 256, "rows per Adam step", POSITIVE),
    _f("bc.num_steps", S, int, 300_000, "gradient steps per fit", POSITIVE),
    _f("bc.learning_rate", T, float, 5e-4, "Adam learning rate", LEARNING_RATE),
    _f("bc.data", S, str, "latest", "latest batch (original) or all data (--all_bc)",
       choices=("latest", "all")),
    _f("bc.reinit", S, bool, True, "re-initialise the BC net before each fit (original)"),
    _f("bc.reset_optimizer", S, bool, False, "reset Adam before each fit (original keeps it)"),
    # imagine
    _f("imagine.horizon", S, int, 250, "H (1000 for hopper / walker2d)", POSITIVE),
    _f("imagine.batch_size", S, int, 50_000,
       "imagined transitions per TRPO iteration (B = batch_size / H rollouts)", POSITIVE),
    _f("imagine.member_sampling", S, str, "per_step",
       "per_step (original: one member per step for all rollouts) | per_rollout",
       choices=("per_step", "per_rollout")),
    _f("imagine.start_states", S, str, "reset",
       "reset (original: real reset distribution) | dataset (all rows of the data) | latest "
       "(the latest batch: states the deployed policy visited over whole episodes) | "
       "reset_latest (each start a reset state or a latest-batch state, half and half)",
       choices=("reset", "dataset", "latest", "reset_latest")),
    _f("imagine.exploration", S, str, "constant",
       "constant (mean + sigma*N, original) | learned (mean + std*N)",
       choices=("constant", "learned")),
    _f("imagine.explore_sigma", T, float, 0.1,
       "sigma of constant exploration (also used when collecting)", SIGMA),
    _f("imagine.keep_partial_paths", S, bool, False,
       "keep paths cut by the end of the scan (original: complete paths only)"),
    _f("imagine.penalty", S, str, "none",
       "none (original) | disagreement: the imagined reward minus penalty_coef x the active "
       "members' disagreement on the next state (MOPO-style pessimism; every member is "
       "evaluated at every step)", choices=("none", "disagreement")),
    _f("imagine.penalty_coef", T, float, 1.0,
       "lambda of imagine.penalty=disagreement (reward units per unit of disagreement: the "
       "L2 norm over dimensions of the members' std, each in units of the data's delta std)",
       PENALTY),
    _f("imagine.warmup_horizon", T, int, 0,
       "paths end after this many steps (<= imagine.horizon) in deployments 1 to "
       "imagine.warmup_deployments; 0: imagine.horizon in every deployment (original)", NONNEG),
    _f("imagine.warmup_deployments", T, int, 1,
       "how many deployments from the first imagine.warmup_horizon caps (online, deployment 1 "
       "learns from uniform-random data; offline, the run has one deployment)", NONNEG),
    # trpo
    _f("trpo.target_kl", T, float, 0.1, "delta (0.1 halfcheetah, 0.05 ant/hopper/walker2d)",
       TARGET_KL),
    _f("trpo.cg_damping", T, float, 0.1, "Fisher damping", DAMPING),
    _f("trpo.cg_iters", S, int, 10, "conjugate-gradient iterations", POSITIVE),
    _f("trpo.ls_steps", S, int, 10, "backtracking line-search steps", POSITIVE),
    _f("trpo.ls_backtrack", S, float, 0.5, "backtracking factor", OPEN_UNIT),
    _f("trpo.accept_ratio", S, float, 0.1,
       "accept when improvement / expected improvement > this", NONNEG),
    _f("trpo.ls_check_kl", S, bool, False, "require KL <= target_kl in the line search (original: no)"),
    _f("trpo.ratio_std", S, str, "policy",
       "sigma scoring the imagined actions in TRPO's ratio and KL: policy (original: the "
       "policy's own, e^-5 after BC) | sampling (explore_sigma, the one they were drawn with) | "
       "floor (max of the two)", choices=("policy", "sampling", "floor")),
    _f("trpo.fvp", S, str, "gauss_newton",
       "gauss_newton (J^T H J v, ~1.5x fewer FLOPs) | hessian (original's HVP of the KL)",
       choices=("gauss_newton", "hessian")),
    _f("trpo.shs_from_cg", S, bool, True,
       "x'Fx from CG's accumulated Fx (False: one more FVP, as the original)"),
    _f("trpo.line_search", S, str, "sequential",
       "sequential (stop at first accepted, original) | parallel (vmapped; same result)",
       choices=("sequential", "parallel")),
    _f("trpo.gamma", T, float, 0.99, "discount", UNIT_NO_ZERO),
    _f("trpo.lam", T, float, 0.95, "GAE lambda (0.97 ant)", UNIT),
    _f("trpo.kl_penalty", T, float, 0.0,
       "alpha of the explicit KL-to-behaviour reward penalty (original 0)", PENALTY),
    _f("trpo.kl_budget", T, float, 0.0,
       "once the mean KL from the policy to the clone it started the deployment from (under "
       "ratio_std's sigma) exceeds this, the deployment's further TRPO updates are skipped; "
       "0 = no budget (original)", BUDGET),
    _f("trpo.kl_budget_decay", T, float, 1.0,
       "the budget of deployment k (1-based) is kl_budget * kl_budget_decay^(k-1): < 1 holds "
       "the later deployments, whose clones are of better policies, nearer their clone; "
       "1 = the same budget in every deployment", DECAY),
    _f("trpo.kl_budget_states", S, str, "imagined",
       "where kl_budget measures the KL to the clone: imagined (the iteration's imagined "
       "batch) | latest (imagine.batch_size states of the latest real batch, offline the "
       "dataset, drawn once per call) | max (the larger of the two) | max_learned (max where "
       "a learned policy collected the latest batch: not on the uniform-random first one)",
       choices=("imagined", "latest", "max", "max_learned")),
    _f("trpo.baseline", S, str, "linear", "linear (original) | mlp", choices=("linear", "mlp")),
    _f("trpo.value_learning_rate", T, float, 3e-4,
       "Adam learning rate of the MLP value function (baseline=mlp)", LEARNING_RATE),
    _f("trpo.bootstrap_truncation", S, bool, False, "bootstrap at the horizon cut (original: no)"),
    _f("trpo.validation", S, str, "none",
       "none (original) | members: after each chunk, keep the new policy only if its imagined "
       "return improved under at least validation_ratio of the active members on their own "
       "(ME-TRPO's policy validation), else roll back to the chunk's start",
       choices=("none", "members")),
    _f("trpo.validation_ratio", T, float, 0.7,
       "fraction of active members that must see an improvement (validation=members)", UNIT),
    _f("trpo.validation_rollouts", S, int, 50,
       "start states per member of the validation (validation=members; imagine.horizon steps)",
       POSITIVE),
    _f("trpo.iterations", S, int, 2000, "TRPO iterations per deployment (80 x 25)", POSITIVE),
    _f("trpo.chunk", S, int, 25, "iterations per jitted call / evaluation period", POSITIVE),
    # deploy
    _f("deploy.num_deployments", S, int, 5, "K", POSITIVE),
    _f("deploy.batch_size", S, int, 200_000, "real transitions per deployment", POSITIVE),
    _f("deploy.num_envs", S, int, 200,
       "parallel real envs while collecting (batch_size / num_envs steps each)", POSITIVE),
    # eval
    _f("eval.num_episodes", S, int, 3, "deterministic real episodes per evaluation", POSITIVE),
    _f("eval.model_return", S, bool, True,
       "also play those episodes' first imagine.horizon steps in the learned model: "
       "eval/model_return_mean, eval/prefix_return_mean (real) and eval/model_gap (model - real)"),
    _f("eval.member_rollouts", S, int, 0,
       "> 0: also the policy's imagined return (mean action, imagine.horizon steps) under each "
       "active member on its own, from this many reset states fixed for the whole run: "
       "eval/model_return_min, the lowest member's, a pessimistic estimate that picks an "
       "offline checkpoint without real episodes (0: off)", NONNEG),
    # checkpoint
    _f("checkpoint.every", H, int, 1,
       "checkpoint after every k-th chunk (deployment preambles and the end always)", AT_LEAST_ONE),
    _f("checkpoint.max_to_keep", H, int, 3, "checkpoints kept on disk", AT_LEAST_ONE),
)
del S, T, H

SCHEMA: dict[str, Field] = {f.name: f for f in FIELDS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(f.section for f in FIELDS if f.section))


# Fields added to the schema after runs were stored whose defaults reproduce what those runs did:
# a stored config without them takes the default (host fields always do), so older runs resume.
BACKWARD_COMPATIBLE = frozenset({"dynamics.reward_model", "dynamics.done_threshold",
                                 "trpo.ratio_std", "eval.model_return", "compile_effort",
                                 "trpo.validation", "trpo.validation_ratio",
                                 "trpo.validation_rollouts", "trpo.kl_budget",
                                 "trpo.kl_budget_decay", "trpo.kl_budget_states",
                                 "imagine.penalty", "imagine.penalty_coef",
                                 "imagine.warmup_horizon", "imagine.warmup_deployments",
                                 "eval.member_rollouts", "dynamics.val_split"})
# ... and the value such a stored run had where it is not the schema's default today.
STORED_DEFAULTS = {"compile_effort": "default"}  # "auto" became the default on 2026-12-04


def suggest(name: str) -> str:
    """``"; did you mean 'trpo.target_kl'?"`` for a near miss, else a pointer to the schema."""
    leaf = name.rpartition(".")[2]
    same_leaf = [f.name for f in FIELDS if f.leaf == leaf]  # the right name in the wrong section
    close = same_leaf or difflib.get_close_matches(name, SCHEMA, n=1, cutoff=0.6)
    if not close:  # a typo in the leaf only
        by_leaf = {f.leaf: f.name for f in FIELDS}
        close = [by_leaf[m] for m in difflib.get_close_matches(leaf, by_leaf, n=1, cutoff=0.8)]
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return "; the fields are listed in bremen_jax/config/schema.py"


def field(name: str) -> Field:
    """The schema row of ``name``; :class:`ConfigError` with a suggestion if there is none."""
    try:
        return SCHEMA[name.removeprefix("config.")]
    except KeyError:
        raise ConfigError(f"unknown config field {name!r}{suggest(name)}") from None


def kind_of(name: str) -> str:
    """``"static"``, ``"traced"`` or ``"host"`` for a dotted field name."""
    return field(name).kind


def is_static(name: str) -> bool:
    """Whether changing ``name`` changes :class:`StaticConfig` (so recompiles)."""
    return kind_of(name) == STATIC


def fields_of(section: str, kind: str | None = None) -> tuple[Field, ...]:
    """The fields of ``section`` (``""``: top level), optionally of one kind, in schema order."""
    return tuple(f for f in FIELDS if f.section == section and kind in (None, f.kind))


def default_config() -> ml_collections.ConfigDict:
    """A fresh ``ConfigDict`` of the schema's defaults, nested by section."""
    cfg = ml_collections.ConfigDict()
    for f in FIELDS:
        node = cfg
        if f.section:
            if f.section not in node:
                node[f.section] = ml_collections.ConfigDict()
            node = node[f.section]
        node[f.leaf] = f.default
    return cfg


def is_finite_number(x: Any) -> bool:
    return not isinstance(x, float) or math.isfinite(x)
