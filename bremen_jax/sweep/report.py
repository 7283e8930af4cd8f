"""Sweep results on the host: one row per run, the summary over seeds, files and plots.

Nothing here runs inside ``jit``. :mod:`bremen_jax.sweep.program` calls :func:`run_rows` on each
outer value's metrics (NumPy leaves ``[R, K, ...]``), then :func:`summarize` and
:func:`write_outputs`:

* ``runs.csv`` / ``runs.jsonl``: run, outer, point, seed, every swept field, ``ensemble_size``
  (the run's ``dynamics.num_active``), ``random_return`` (deployment 1's uniform-random collection),
  ``return_d1..return_dK`` (deterministic return after each deployment's last TRPO chunk),
  ``bc_return_d1..`` (after BC re-initialisation), ``final_return`` (= ``return_dK``),
  ``best_return`` (the highest of all K x C evaluations: chosen with real episodes, so an upper
  bound, not a result) and ``mean_return`` (the mean of the last deployment's C evaluations: the
  expected return of a checkpoint drawn uniformly, which needs no real episode to choose);
  offline sweeps (one deployment on a dataset) read ``return_d1`` as the last iterate;
* ``summary.json`` / ``summary.md``: per (outer, point) mean ± std over seeds (sample std,
  ``ddof=1``; 0 for one seed), sorted by mean final return, the best point marked;
* ``plots/returns_vs_deployment.png`` (one line per point, band = ± std over seeds) and, when
  the ensemble size varies, ``plots/final_vs_ensemble_size.png``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import zipfile
from typing import Any, Sequence

import numpy as np

from bremen_jax.datasets import scores
from bremen_jax.run.logs import to_python

ENSEMBLE_FIELDS = ("dynamics.num_active", "dynamics.num_members")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def label(values: dict) -> str:
    """``"trpo.target_kl=0.1, dynamics.num_active=3"`` (``"base config"`` when empty)."""
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in values.items()) or "base config"


def progress_text(metrics: dict, num_runs: int) -> str:
    """``"return 1234.5 ± 456.7 (min 800.1, max 1700.0) over 3 runs"``: the deterministic return
    after the last deployment in ``metrics`` (NumPy leaves ``[R_pad, n, ...]`` of the ``n``
    deployments a call ran; rows ``>= num_runs`` are padding), mean ± sample std over runs."""
    ev = metrics.get("eval", {}).get("eval/return_mean")
    if ev is None:
        return "no evaluation in the metrics"
    last = np.asarray(ev, np.float64)[:num_runs, -1, -1]
    std = float(np.std(last, ddof=1)) if last.size > 1 else 0.0
    return (f"return {np.mean(last):.1f} ± {std:.1f} (min {np.min(last):.1f}, max "
            f"{np.max(last):.1f}) over {last.size} run{'s' if last.size != 1 else ''}")


def run_rows(plan, spec, metrics: dict, offset: int = 0) -> list[dict]:
    """One row per run of ``plan`` (:class:`bremen_jax.sweep.OuterPlan`) from its metrics."""
    ev = np.asarray(metrics["eval"]["eval/return_mean"], np.float64)          # [R, K, C]
    bc = np.asarray(metrics["preamble"]["bc_eval/return_mean"], np.float64)   # [R, K]
    rnd = metrics["preamble"].get("collect/return_mean")
    active = np.asarray(plan.hp.dynamics.num_active)
    rows = []
    for r in range(ev.shape[0]):
        p = int(plan.point[r])
        row = {"run": offset + r, "outer": plan.index, "point": p, "seed": int(plan.seeds[r]),
               **plan.values, **spec.points[p], "ensemble_size": int(active[r]),
               "random_return": None if rnd is None else float(np.asarray(rnd)[r, 0])}
        row.update({f"return_d{k + 1}": ev[r, k, -1] for k in range(ev.shape[1])})
        row.update({f"bc_return_d{k + 1}": bc[r, k] for k in range(bc.shape[1])})
        finite = ev[r][np.isfinite(ev[r])]
        row["final_return"] = ev[r, -1, -1]
        row["best_return"] = finite.max() if finite.size else math.nan
        row["mean_return"] = float(ev[r, -1].mean())
        sc = scores.scores_or_none(plan.static.task, {"final_score": row["final_return"],
                                                      "best_score": row["best_return"]})
        row.update(sc or {"final_score": None, "best_score": None})
        rows.append(to_python(row))
    return rows


def _stats(xs: Sequence[float | None]) -> tuple[float, float]:
    a = np.asarray([math.nan if x is None else x for x in xs], np.float64)
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return float(a.mean()), std


def _clean(x: float) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def summarize(rows: list[dict], spec, timings: Sequence[dict] = (),
              offline: dict | None = None) -> dict:
    """Mean ± std over seeds per (outer, point), sorted by mean final return (best first).

    ``offline`` (an offline sweep's dataset info, with ``behavior_return``) is kept in the summary
    with the behaviour's normalised score."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["outer"], row["point"]), []).append(row)
    fields = list(spec.outer_fields) + list(spec.fields)
    out = []
    for (o, p), rs in groups.items():
        K = sum(1 for k in rs[0] if k.startswith("return_d"))
        g = {"outer": o, "point": p, "values": {f: rs[0][f] for f in fields},
             "ensemble_size": rs[0]["ensemble_size"], "seeds": [r["seed"] for r in rs],
             "n": len(rs)}
        g["label"] = label(g["values"])
        for metric in ("final_return", "best_return", "mean_return", "final_score"):
            m, s = _stats([r.get(metric) for r in rs])
            g[f"{metric}_mean"], g[f"{metric}_std"] = _clean(m), _clean(s)
        for prefix in ("return", "bc_return"):
            stats = [_stats([r[f"{prefix}_d{k + 1}"] for r in rs]) for k in range(K)]
            g[f"{prefix}s_mean"] = [_clean(m) for m, _ in stats]
            g[f"{prefix}s_std"] = [_clean(s) for _, s in stats]
        out.append(g)
    out.sort(key=lambda g: (g["final_return_mean"] is None, -(g["final_return_mean"] or 0.0)))
    for i, g in enumerate(out):
        g["rank"], g["best"] = i + 1, i == 0 and g["final_return_mean"] is not None
    compile_s = sum(t.get("compile_s", 0.0) for t in timings)
    run_s = sum(t.get("run_s", 0.0) for t in timings)
    excl = len(rows) / run_s * 3600 if run_s > 0 else None
    incl = len(rows) / (run_s + compile_s) * 3600 if run_s + compile_s > 0 else None
    if offline is not None:
        offline = dict(offline, behavior_score=None)
        if offline.get("task") and offline.get("behavior_return") is not None:
            sc = scores.scores_or_none(offline["task"], {"behavior": offline["behavior_return"]})
            offline["behavior_score"] = None if sc is None else sc["behavior"]
    return {"metric": "final_return", "std": "sample std over seeds (ddof=1; 0 for one seed)",
            "offline": offline,
            "num_runs": len(rows), "num_points": len(out), "seeds": list(spec.seeds),
            "fields": fields, "points": out, "best": out[0] if out and out[0]["best"] else None,
            "timings": {"compile_s": round(compile_s, 3), "run_s": round(run_s, 3),
                        "runs_per_hour_excluding_compile": excl,
                        "runs_per_hour_including_compile": incl,
                        "padded_runs": sum(t.get("padded_runs", 0) for t in timings)}}


def _pm(m: float | None, s: float | None) -> str:
    return "n/a" if m is None else f"{m:.1f} ± {0.0 if s is None else s:.1f}"


def summary_markdown(summary: dict) -> str:
    """A markdown table: rank, point, final / best return (mean ± std), returns per deployment."""
    lines = [f"# Sweep summary: {summary['num_runs']} runs, {summary['num_points']} points, "
             f"seeds {summary['seeds']}", "",
             f"Sorted by mean final return; {summary['std']}.", ""]
    off = summary.get("offline")
    if off:
        beh = off.get("behavior_return")
        lines += [f"Offline on {off['path']} ({off['rows']:,} rows); behaviour return "
                  f"{'unknown' if beh is None else f'{beh:.1f}'}; final = the last iterate.", ""]
    lines += [
             "| rank | point | final return | best return | mean return per deployment | seeds "
             "| |", "|---:|---|---:|---:|---|---:|---|"]
    for g in summary["points"]:
        per = " / ".join("n/a" if x is None else f"{x:.1f}" for x in g["returns_mean"])
        final = _pm(g["final_return_mean"], g["final_return_std"])
        best = _pm(g["best_return_mean"], g["best_return_std"])
        lines.append(f"| {g['rank']} | {g['label']} | {final} | {best} | {per} | {g['n']} "
                     f"| {'**best**' if g['best'] else ''} |")
    padded = summary["timings"]["padded_runs"]
    lines += ["", f"{throughput_line(summary)}; padded runs {padded}.", ""]
    return "\n".join(lines)


def throughput_line(summary: dict) -> str:
    """``Compile C s, run R s; N runs/hour excluding compile, M including it``."""
    t = summary["timings"]
    text = f"Compile {t['compile_s']:.1f} s, run {t['run_s']:.1f} s"
    excl, incl = t["runs_per_hour_excluding_compile"], t["runs_per_hour_including_compile"]
    if excl is not None:
        text += (f"; {excl:,.0f} runs/hour excluding compile, {incl:,.0f} runs/hour including "
                 f"it")
    return text


def print_summary(summary: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"sweep: {summary['num_runs']} runs, {summary['num_points']} points")
    for col in ("rank", "point", "final return", "best return", "seeds"):
        table.add_column(col, justify="left" if col == "point" else "right")
    for g in summary["points"]:
        table.add_row(str(g["rank"]) + (" *" if g["best"] else ""), g["label"],
                      _pm(g["final_return_mean"], g["final_return_std"]),
                      _pm(g["best_return_mean"], g["best_return_std"]), str(g["n"]))
    console.print(table)
    console.print(throughput_line(summary))


# ------------------------------------------------------------------------ files
def write_json(path: pathlib.Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_rows(workdir: pathlib.Path, rows: list[dict]) -> None:
    """``runs.jsonl`` and ``runs.csv`` (columns: the union of the rows' keys, first seen first)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "runs.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(workdir / "runs.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])


def partial_metrics_path(workdir: pathlib.Path, index: int) -> pathlib.Path:
    """Where a checkpointed outer value keeps the metrics of its deployments done so far
    (``[R, done, ...]``, rewritten before each checkpoint, removed when
    ``metrics_outer<index>.npz`` is written): an interrupted sweep's finished deployments."""
    return pathlib.Path(workdir) / f"metrics_outer{index}.partial.npz"


def write_metrics(path: pathlib.Path, metrics: dict, plan) -> None:
    """Every metric of every run of one outer value (``[R, K, ...]``) as an ``.npz``; written
    to a temporary file first, so that an earlier file at ``path`` is replaced whole or not at
    all."""
    flat = {"seeds": plan.seeds, "point": plan.point}

    def walk(prefix, tree):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}|", v)
            else:
                flat[f"{prefix}{k}"] = np.asarray(v)

    walk("", metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **flat)
    os.replace(tmp, path)


def read_metrics(path: pathlib.Path, plan) -> dict:
    """The metrics :func:`write_metrics` wrote for ``plan``'s runs (nested dict, leaves
    ``[R, K, ...]``). Raises ``ValueError`` (one line) for a file that cannot be read or holds
    other runs (seeds or points)."""
    try:
        with np.load(path) as z:
            flat = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {path} ({type(e).__name__}: {e}); remove it to run that "
                         f"outer value again") from None
    for name, want in (("seeds", plan.seeds), ("point", plan.point)):
        if name not in flat or not np.array_equal(flat.pop(name), np.asarray(want)):
            raise ValueError(f"{path} holds other runs than outer value {plan.index} (its "
                             f"{name!r} differ); remove it to run that outer value again")
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("|")
        node = out
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return out


def write_outputs(workdir: pathlib.Path, rows: list[dict], summary: dict) -> None:
    write_rows(workdir, rows)
    write_json(workdir / "summary.json", summary)
    (workdir / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    plot_returns(workdir / "plots" / "returns_vs_deployment.png", summary)
    if len({r["ensemble_size"] for r in rows}) > 1:
        plot_ensemble(workdir / "plots" / "final_vs_ensemble_size.png", rows, summary["fields"])


# ------------------------------------------------------------------------ plots
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator
    return MaxNLocator(integer=True)


def _arr(xs) -> np.ndarray:
    return np.asarray([math.nan if x is None else x for x in xs], np.float64)


def _finish(plt, fig, ax, path: pathlib.Path, xlabel: str, ylabel: str, title: str) -> None:
    """Integer x ticks, labels, title, grid and legend; writes ``path`` (png, 100 dpi), closes."""
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_returns(path: pathlib.Path, summary: dict) -> None:
    """Mean return after each deployment, one line per point, band = ± std over seeds."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for g in summary["points"]:
        m, s = _arr(g["returns_mean"]), _arr(g["returns_std"])
        x = np.arange(1, m.size + 1)
        (line,) = ax.plot(x, m, marker="o", label=g["label"] + (" (best)" if g["best"] else ""))
        ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.2)
    _finish(plt, fig, ax, path, "deployment", "return (deterministic policy)",
            f"return vs deployment (mean ± std over {len(summary['seeds'])} seed(s))")


def plot_ensemble(path: pathlib.Path, rows: list[dict], fields: Sequence[str]) -> None:
    """Final return vs ensemble size (mean ± std over runs), one line per setting of the other
    swept fields."""
    plt = _pyplot()
    others = [f for f in fields if f not in ENSEMBLE_FIELDS]
    lines: dict[str, dict[int, list]] = {}
    for r in rows:
        name = label({f: r[f] for f in others}) if others else "all runs"
        lines.setdefault(name, {}).setdefault(r["ensemble_size"], []).append(r["final_return"])
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, by_size in lines.items():
        sizes = sorted(by_size)
        stats = [_stats(by_size[k]) for k in sizes]
        ax.errorbar(sizes, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o",
                    capsize=3, label=name)
    _finish(plt, fig, ax, path, "ensemble size (active members)", "final return",
            "final return vs ensemble size (mean ± std)")
