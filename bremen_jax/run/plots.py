"""Learning curves of run directories: ``bremen plot``, :func:`bremen_jax.plot`, ``curves.png``.

The data part reads a run directory's logs (``chunks.jsonl``, ``deployments.jsonl``,
``config.json``, ``summary.json``) into NumPy arrays (:func:`load_run`), groups runs that share a
config up to the seed (:func:`group_runs`) and averages them (:func:`mean_std`);
:func:`~bremen_jax.run.plot_draw.draw` makes one figure of three panels (matplotlib, no pyplot
state) and :func:`plot` writes it (png, svg or pdf by suffix):

(a) real return: after each deployment and at every chunk's evaluation, with the BC-init return of
    each deployment, against real samples (one line per deployment); a run with one deployment
    (offline) has no real-sample axis and is drawn against TRPO iterations instead;
(b) imagined (model rollouts) vs real (evaluation episodes) return per TRPO chunk, against TRPO
    iterations, and the evaluation's episodes over their first H steps in the model and in the
    real env (``eval/model_return_mean``, ``eval/prefix_return_mean``; their difference is
    ``eval/model_gap``): the model being exploited shows as
    imagined rising while real does not;
(c) the ensemble's validation error per deployment, before and after its fit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from bremen_jax.run.logs import read_jsonl

FORMATS = ("png", "svg", "pdf")
IGNORED = ("seed",)  # config fields that do not split runs into groups (with the host fields)


@dataclasses.dataclass
class RunCurves:
    """The arrays of one run directory. ``[N]``: one entry per logged TRPO chunk; ``[K]``: per
    finished deployment. Missing values are NaN."""

    path: str
    config: dict[str, Any]          # flattened config.json ("trpo.iterations": 4, ...)
    kind: str                       # "train" or "offline" (run.json)
    iteration: np.ndarray           # [N] TRPO iterations done at the chunk's end (whole run)
    chunk_deployment: np.ndarray    # [N] int, the chunk's deployment (1-based)
    eval_return: np.ndarray         # [N] mean return of the chunk's evaluation episodes
    imagined_return: np.ndarray     # [N] mean imagined episode return over the chunk's iterations
    model_return: np.ndarray        # [N] the evaluation's episodes' first H steps in the model
    prefix_return: np.ndarray       # [N] ... and in the real env (both NaN: eval.model_return off)
    deployment: np.ndarray          # [K] int
    env_steps: np.ndarray           # [K] real transitions after the deployment
    returns: np.ndarray             # [K] evaluation return after the deployment's last chunk
    bc_return: np.ndarray           # [K] evaluation return of the BC-initialised policy
    collect_return: np.ndarray      # [K] return of the episodes that collected its data
    val_loss: np.ndarray            # [K] ensemble validation MSE after the fit
    init_val_loss: np.ndarray       # [K] ... of the ensemble before the fit (on the new split)
    behavior_return: float = math.nan  # offline: the dataset's behaviour policy

    @property
    def task(self) -> str:
        return str(self.config.get("task", "?"))


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _col(rows: list[dict], key: str, dtype=np.float64) -> np.ndarray:
    """Column ``key`` of ``rows`` (None / absent -> NaN; the logs' "nan"/"inf" strings too)."""
    return np.asarray([math.nan if r.get(key) is None else float(r[key]) for r in rows], dtype)


def _rows(path: pathlib.Path) -> list[dict]:
    try:
        return read_jsonl(path) if path.is_file() else []
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} holds a line that is not JSON ({e}); expected the log a run "
                         f"wrote") from None


def _json(path: pathlib.Path) -> dict:
    """A JSON object file, or ``{}`` when absent (or not an object)."""
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); expected the file a run wrote") from None
    return data if isinstance(data, dict) else {}


def load_run(run_dir: str | os.PathLike) -> RunCurves:
    """The curves of the run in ``run_dir`` (a work directory of ``bremen train``/``offline``)."""
    w = pathlib.Path(run_dir)
    if not (w / "config.json").is_file():
        raise FileNotFoundError(f"{w} holds no run (no config.json); expected a work directory "
                                f"written by bremen train or bremen offline")
    config = _flat(_json(w / "config.json"))
    chunks, deps = _rows(w / "chunks.jsonl"), _rows(w / "deployments.jsonl")
    summary, info = _json(w / "summary.json"), _json(w / "run.json")
    behavior = summary.get("behavior_return")
    return RunCurves(
        path=str(w), config=config, kind=str(info.get("kind", "train")),
        iteration=_col(chunks, "iteration", np.int64),
        chunk_deployment=_col(chunks, "deployment", np.int64),
        eval_return=_col(chunks, "eval/return_mean"),
        imagined_return=_col(chunks, "imagined_return_mean"),
        model_return=_col(chunks, "eval/model_return_mean"),
        prefix_return=_col(chunks, "eval/prefix_return_mean"),
        deployment=_col(deps, "deployment", np.int64), env_steps=_col(deps, "env_steps"),
        returns=_col(deps, "return"), bc_return=_col(deps, "bc_return"),
        collect_return=_col(deps, "collect/return_mean"),
        val_loss=_col(deps, "dynamics/val_loss"),
        init_val_loss=_col(deps, "dynamics/init_val_loss"),
        behavior_return=math.nan if behavior is None else float(behavior))


def _is_host(name: str) -> bool:
    from bremen_jax import config as config_lib

    try:
        return config_lib.kind_of(name) == "host"
    except config_lib.ConfigError:  # a field this version does not know: compared like others
        return False


def config_key(run: RunCurves) -> tuple:
    """What runs must share to be averaged: the config up to the seed and host fields."""
    return tuple(sorted((k, repr(v)) for k, v in run.config.items()
                        if k not in IGNORED and not _is_host(k)))


def group_runs(runs: Sequence[RunCurves]) -> list[list[RunCurves]]:
    """Runs with the same :func:`config_key`, in order of first appearance."""
    groups: dict[tuple, list[RunCurves]] = {}
    for r in runs:
        groups.setdefault(config_key(r), []).append(r)
    return list(groups.values())


def group_labels(groups: Sequence[Sequence[RunCurves]]) -> list[str]:
    """One legend label per group: the config fields that differ between groups (at most three),
    else the task; ``(n runs)`` where a group averages several."""
    configs = [dict(config_key(g[0])) for g in groups]
    fields = sorted({k for c in configs for k in c if any(c.get(k) != o.get(k) for o in configs)})
    out = []
    for g, c in zip(groups, configs):
        parts = [f"{k}={c.get(k, '-')}".replace("'", "") for k in fields[:3]]
        name = ", ".join(parts) + (", ..." if len(fields) > 3 else "") if parts else g[0].task
        out.append(name + (f" ({len(g)} runs)" if len(g) > 1 else ""))
    return out


def mean_std(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and (population, ddof 0) std over runs of ``ys[i]`` at ``xs[i]``, on the union of the
    ``x`` values; each ``x`` averages the runs that have a finite value there.

    Returns ``(x [M], mean [M], std [M], n [M])``; ``n`` counts the runs averaged at each ``x``.
    """
    x = np.unique(np.concatenate([np.asarray(a, np.float64) for a in xs])) if xs else np.zeros(0)
    vals = [[] for _ in x]
    for xi, yi in zip(xs, ys):
        for a, b in zip(np.asarray(xi, np.float64), np.asarray(yi, np.float64)):
            if math.isfinite(b):
                vals[int(np.searchsorted(x, a))].append(b)
    keep = np.asarray([bool(v) for v in vals], bool)
    mean = np.asarray([np.mean(v) if v else math.nan for v in vals])
    std = np.asarray([np.std(v) if v else math.nan for v in vals])
    n = np.asarray([len(v) for v in vals], np.int64)
    return x[keep], mean[keep], std[keep], n[keep]


def chunk_env_steps(r: RunCurves) -> np.ndarray:
    """``[N]`` real samples collected when each chunk ran: its deployment's ``env_steps`` (a
    deployment not finished yet: ``d * deploy.batch_size``)."""
    steps = dict(zip(r.deployment.tolist(), r.env_steps.tolist()))
    per = float(r.config.get("deploy.batch_size", math.nan))
    return np.asarray([steps.get(d, d * per) for d in r.chunk_deployment.tolist()], np.float64)


def plot(run_dirs: Sequence[str | os.PathLike] | str | os.PathLike,
         out: str | os.PathLike, *, title: str | None = None):
    """Draws the runs in ``run_dirs`` (:func:`draw`) and writes ``out`` (png, svg or pdf by its
    suffix; written atomically). Returns the matplotlib ``Figure``."""
    from bremen_jax.run.plot_draw import draw

    out = pathlib.Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot write plot {out}: unknown format "
                         f"{out.suffix or '(no suffix)'!r}; "
                         f"expected a file name ending in .png, .svg or .pdf")
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ValueError("no run directory to plot; expected one or more work directories")
    fig = draw([load_run(d) for d in run_dirs], title=title)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, format=fmt, dpi=110)
    tmp.replace(out)
    return fig
