"""The figure of :mod:`bremen_jax.run.plots`: three panels drawn with matplotlib's object API (no
pyplot state, so nothing leaks between calls; the Agg canvas writes png, svg and pdf)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from bremen_jax.run.plots import RunCurves, chunk_env_steps, group_labels, group_runs, mean_std

BAND_ALPHA = 0.2


def _band(ax, x, mean, std, color, **kw):
    """A line with a ± std band (the band only where several runs were averaged)."""
    (line,) = ax.plot(x, mean, color=color, **kw)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=BAND_ALPHA, lw=0)
    return line


def _stats(group: Sequence[RunCurves], x: str, y: str):
    return mean_std([getattr(r, x) for r in group], [getattr(r, y) for r in group])


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", transform=ax.transAxes, ha="center", va="center",
            color="gray")


def _deployment_lines(ax, xs, texts) -> None:
    """Dotted vertical lines marking deployments, named at the top of the panel."""
    for x, t in zip(xs, texts):
        ax.axvline(x, color="gray", ls=":", lw=1, zorder=0)
        if len(xs) <= 12:
            ax.annotate(t, (x, 1), xycoords=("data", "axes fraction"), xytext=(2, -2),
                        textcoords="offset points", va="top", fontsize="x-small", color="gray")


def _reference(ax, values: Sequence[float], text: str) -> None:
    """A dashed horizontal line at the mean of the finite ``values`` (none: no line)."""
    v = [x for x in values if math.isfinite(x)]
    if v:
        ax.axhline(float(np.mean(v)), color="gray", ls="--", lw=1, label=text)


def _panel_samples(ax, groups, labels, colors) -> None:
    """(a) online: return against real samples; chunk evaluations as dots at their deployment."""
    for g, name, c in zip(groups, labels, colors):
        x, m, s, _ = _stats(g, "env_steps", "returns")
        _band(ax, x, m, s, c, marker="o", label=f"{name}after the deployment")
        x, m, s, _ = _stats(g, "env_steps", "bc_return")
        ax.plot(x, m, "v", mfc="none", color=c, label=f"{name}BC-init (start of its TRPO)")
        if np.any(s > 0):
            ax.errorbar(x, m, yerr=s, fmt="none", ecolor=c, elinewidth=1, capsize=2, alpha=0.8)
        it, m, _, _ = _stats(g, "iteration", "eval_return")
        where = {i: x for r in g for i, x in zip(r.iteration.tolist(),
                                                 chunk_env_steps(r).tolist())}
        xs = np.asarray([where.get(i, math.nan) for i in it.tolist()])
        ax.plot(xs, m, ".", color=c, alpha=0.45, label=f"{name}each TRPO chunk")
    first = groups[0][0]
    _deployment_lines(ax, first.env_steps, [f"D{d}" for d in first.deployment.tolist()])
    if len(groups) == 1:
        _reference(ax, [r.collect_return[0] for r in groups[0] if r.collect_return.size],
                   "uniform-random policy (deployment 1's data)")
    ax.set_xlim(left=0)
    ax.set_xlabel("real environment steps (transitions collected)")
    ax.set_title("(a) Real return vs real samples")


def _panel_offline(ax, groups, labels, colors) -> None:
    """(a) offline: return against TRPO iterations (the dataset is the only real data)."""
    for g, name, c in zip(groups, labels, colors):
        x, m, s, _ = _stats(g, "iteration", "eval_return")
        bx, bm, bs, _ = _stats(g, "deployment", "bc_return")
        iters = int(g[0].config.get("trpo.iterations", 0))
        x, m, s = np.concatenate([(bx - 1) * iters, x]), np.concatenate([bm, m]), \
            np.concatenate([bs, s])
        _band(ax, x, m, s, c, marker=".", label=f"{name}evaluation")
        ax.plot((bx - 1) * iters, bm, "v", mfc="none", color=c, label=f"{name}BC-init")
    if len(groups) == 1:
        _reference(ax, [r.behavior_return for r in groups[0]], "dataset's behaviour policy")
    rows = groups[0][0].env_steps
    ax.set_xlabel("TRPO iterations" + (f" (on a dataset of {int(rows[0])} transitions)"
                                       if rows.size and math.isfinite(rows[0]) else ""))
    ax.set_title("(a) Real return over offline training")


def _panel_imagined(ax, groups, labels, colors) -> None:
    """(b) imagined vs real return per TRPO chunk, against TRPO iterations."""
    for g, name, c in zip(groups, labels, colors):
        horizon = g[0].config.get("imagine.horizon", "?")
        x, m, s, _ = _stats(g, "iteration", "eval_return")
        _band(ax, x, m, s, c, marker=".", label=f"{name}real (evaluation episodes)")
        x, m, s, _ = _stats(g, "iteration", "imagined_return")
        _band(ax, x, m, s, c, ls="--", marker="x", ms=4,
              label=f"{name}imagined ({horizon}-step model rollouts)")
        if np.any(np.isfinite(np.concatenate([r.model_return for r in g]))):
            x, m, s, _ = _stats(g, "iteration", "model_return")
            _band(ax, x, m, s, c, ls=":", marker="+", ms=5,
                  label=f"{name}evaluation policy, first {horizon} steps: model")
            x, m, s, _ = _stats(g, "iteration", "prefix_return")
            _band(ax, x, m, s, c, ls="-.", marker="1", ms=5,
                  label=f"{name}evaluation policy, first {horizon} steps: real")
    first = groups[0][0]
    iters = int(first.config.get("trpo.iterations", 0))
    starts = sorted({int(d) for d in first.chunk_deployment.tolist()} - {1})
    _deployment_lines(ax, [(d - 1) * iters for d in starts], [f"D{d}" for d in starts])
    ax.set_xlim(left=0)
    ax.set_xlabel("TRPO iterations (whole run)")
    ax.set_title("(b) Imagined vs real return per TRPO chunk")


def _panel_validation(ax, groups, labels, colors) -> None:
    """(c) ensemble validation MSE per deployment, after and before its fit (log scale)."""
    values = []
    for g, name, c in zip(groups, labels, colors):
        x, m, s, _ = _stats(g, "deployment", "val_loss")
        _band(ax, x, m, s, c, marker="o", label=f"{name}after the fit")
        values.append(m)
        x, m, s, _ = _stats(g, "deployment", "init_val_loss")
        _band(ax, x, m, s, c, ls="--", marker="x", alpha=0.7,
              label=f"{name}before the fit (D1: untrained)")
        values.append(m)
    v = np.concatenate(values)
    if v.size and np.all(v[np.isfinite(v)] > 0):
        ax.set_yscale("log")
    ds = sorted({int(d) for g in groups for r in g for d in r.deployment.tolist()})
    if ds:  # one tick per deployment (a lone deployment too), up to 20
        ax.set_xlim(ds[0] - 0.5, ds[-1] + 0.5)
        ax.set_xticks(ds if len(ds) <= 20 else ds[::-(-len(ds) // 20)])
    ax.set_xlabel("deployment")
    ax.set_ylabel("validation MSE (mean over active members)")
    ax.set_title("(c) Dynamics ensemble validation error")


def _finish(ax, empty: bool, what: str, prefix: str, many: bool) -> None:
    """Grid and the panel's legend: what each style means, from the first config's artists
    (``prefix``: its label prefix), in gray when several configs are drawn (their colours are in
    the figure's legend)."""
    if empty:
        _empty(ax, what)
    ax.grid(alpha=0.3)
    pairs = [(h, t[len(prefix):]) for h, t in zip(*ax.get_legend_handles_labels())
             if t.startswith(prefix)]
    if pairs:
        legend = ax.legend(*zip(*pairs), fontsize="x-small", loc="best")
        for h in legend.legend_handles if many else ():
            h.set_color("0.3")


def _config_legend(fig, names: Sequence[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=f"C{i % 10}", lw=3, label=n) for i, n in enumerate(names)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(names), 3),
               fontsize="small", title="config (line: mean over its runs, band: ± std)")


def _title(runs: Sequence[RunCurves], groups) -> str:
    tasks = ", ".join(sorted({r.task for r in runs}))
    if len(runs) == 1:
        return f"BREMEN {tasks} ({runs[0].kind}): {runs[0].path}"
    return (f"BREMEN {tasks}: {len(runs)} runs in {len(groups)} config(s); "
            f"lines: mean, bands: ± std over runs of a config")


def draw(runs: Sequence[RunCurves], *, title: str | None = None):
    """The figure of ``runs`` (runs sharing a config up to the seed are averaged): panels (a) real
    return, (b) imagined vs real return per chunk, (c) ensemble validation error. Returns a
    ``matplotlib.figure.Figure`` with three axes."""
    from matplotlib.figure import Figure

    groups = group_runs(runs)
    names = group_labels(groups)
    many = len(groups) > 1
    labels = [f"{n}: " for n in names] if many else [""]
    colors = [f"C{i % 10}" for i in range(len(groups))]
    fig = Figure(figsize=(18, 5.4 + 0.25 * len(groups) * many), layout="constrained")
    ax_a, ax_b, ax_c = fig.subplots(1, 3)
    online = all(r.kind == "train" for r in runs)
    (_panel_samples if online else _panel_offline)(ax_a, groups, labels, colors)
    ax_a.set_ylabel("return (deterministic policy, real episodes)")
    _panel_imagined(ax_b, groups, labels, colors)
    ax_b.set_ylabel("episode return")
    _panel_validation(ax_c, groups, labels, colors)
    _finish(ax_a, not any(r.eval_return.size or r.returns.size for r in runs), "evaluations",
            labels[0], many)
    _finish(ax_b, not any(r.iteration.size for r in runs), "TRPO chunks", labels[0], many)
    _finish(ax_c, not any(r.deployment.size for r in runs), "finished deployments", labels[0],
            many)
    if many:
        _config_legend(fig, names)
    fig.suptitle(title or _title(runs, groups))
    return fig
