"""Paired comparison of two seeded offline tables run on the same datasets and seeds.

``python -m experiments.offline_compare A.json B.json [--labels A,B] [--report bremen_final]
[--out FILE.md]``

``A.json`` and ``B.json`` are :mod:`experiments.offline_table` outputs (``--seeds N``), typically
two settings of one option on the same ``--workdir`` (the same dataset files) and seeds. Rows are
matched by (task, rows); per row the table gives BC, both reports, and the **paired** difference
A − B of the normalised score (seed by seed, mean ± its standard error), which removes the seeds'
and the dataset's shared luck that makes unpaired rows of two tables flip (see the README's
"Offline results"). A per-task line pools the task's sizes × seeds. Whether a row really is paired
is checked, not assumed: the seeds must match (else a one-line error), and the BC returns, which
depend only on the dataset, the seed and the machine, are compared (column "same BC").
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors


def _load(path: str) -> dict:
    p = pathlib.Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"offline_compare: cannot read {p}: {e}") from None
    if not isinstance(doc, dict) or not all("returns" in r and "reference_returns" in r
                                            for r in doc.get("rows", [])):
        raise SystemExit(f"offline_compare: {p} is not a seeded offline table (expected "
                         "`python -m experiments.offline_table --seeds N` output with "
                         "rows[*].returns)")
    return doc


def _mean_se(xs: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / √n; 0 for one value)."""
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, 0.0
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m, se = _mean_se(xs)
    return m, se * math.sqrt(len(xs))


def _scores(row: dict, key: str) -> list[float]:
    """Per-seed normalised scores ``100·(R − R_random)/(R_expert − R_random)`` of ``key``,
    recomputed from the raw returns (the table's own ``scores`` are rounded to 0.1)."""
    lo, hi = row["reference_returns"]["random"], row["reference_returns"]["expert"]
    return [100.0 * (x - lo) / (hi - lo) for x in row["returns"][key]]


def paired(doc_a: dict, doc_b: dict, report: str = "bremen_final") -> dict:
    """Rows of both tables matched by (task, size) with the paired differences of ``report``.

    Returns ``{"rows": [...], "tasks": {task: {"diff_mean", "diff_se", "a_wins", "n"}}}``; each row
    holds ``task, size, seeds, bc, a, b`` (per-seed normalised scores), ``diff_mean``, ``diff_se``
    (A − B), ``a_wins`` (seeds with A > B) and ``same_bc``. Rows present in one table only are
    skipped; mismatched seeds raise ``ValueError`` naming the row."""
    index_b = {(r["task"], r["size"]): r for r in doc_b["rows"]}
    rows, per_task = [], {}
    for ra in doc_a["rows"]:
        rb = index_b.get((ra["task"], ra["size"]))
        if rb is None:
            continue
        where = f"{ra['task']} {ra['size']:,} rows"
        if ra["seeds"] != rb["seeds"]:
            raise ValueError(f"{where}: seeds differ ({ra['seeds']} vs {rb['seeds']}); "
                             "a paired comparison needs the same seeds")
        if report not in ra["returns"] or report not in rb["returns"]:
            raise ValueError(f"{where}: no '{report}' report in both tables "
                             f"(have {sorted(ra['returns'])})")
        a, b = _scores(ra, report), _scores(rb, report)
        d = [x - y for x, y in zip(a, b)]
        m, se = _mean_se(d)
        rows.append({"task": ra["task"], "size": ra["size"], "seeds": ra["seeds"],
                     "bc": _scores(ra, "bc"), "a": a, "b": b, "diff_mean": m, "diff_se": se,
                     "a_wins": sum(x > y for x, y in zip(a, b)),
                     "same_bc": ra["returns"]["bc"] == rb["returns"]["bc"]})
        per_task.setdefault(ra["task"], []).append((d, rows[-1]["a_wins"]))
    tasks = {}
    for task, parts in per_task.items():
        d = [x for ds, _ in parts for x in ds]
        m, se = _mean_se(d)
        tasks[task] = {"diff_mean": m, "diff_se": se, "a_wins": sum(w for _, w in parts),
                       "n": len(d)}
    return {"rows": rows, "tasks": tasks}


def markdown(result: dict, labels: tuple[str, str], report: str = "bremen_final") -> str:
    """The paired table: normalised scores, mean ± std over seeds; A − B, mean ± its
    standard error."""
    a, b = labels

    def ms(xs):
        m, s = _mean_std(xs)
        return f"{m:.1f} ± {s:.1f}"

    lines = [f"Paired offline comparison of `{report}` (normalised score; A = {a}, B = {b}); "
             "A − B is the seed-by-seed difference, mean ± standard error.", "",
             f"| task | rows | BC | A: {a} | B: {b} | A − B | seeds A > B | same BC |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['task']} | {r['size']:,} | {ms(r['bc'])} | {ms(r['a'])} | "
                     f"{ms(r['b'])} | {r['diff_mean']:+.2f} ± {r['diff_se']:.2f} | "
                     f"{r['a_wins']}/{len(r['seeds'])} | {'yes' if r['same_bc'] else 'NO'} |")
    for task, t in result["tasks"].items():
        lines.append(f"| {task} | all sizes | | | | {t['diff_mean']:+.2f} ± {t['diff_se']:.2f} | "
                     f"{t['a_wins']}/{t['n']} | |")
    return "\n".join(lines) + "\n"


def add_report_and_out(p: argparse.ArgumentParser) -> None:
    """The ``--report`` and ``--out`` flags shared with :mod:`experiments.offline_pool`."""
    p.add_argument("--report", default="bremen_final",
                   help="bremen_final (last iterate, default) | bremen_mean | bremen_model_pick")
    p.add_argument("--out", default=None, help="also write the markdown table here")


def emit(text: str, out: str | None) -> None:
    """Print the table, and write it to ``out`` when given."""
    if out:
        pathlib.Path(out).write_text(text)
    print(text, end="")


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="offline table JSON (A)")
    p.add_argument("b", help="offline table JSON (B), same datasets and seeds")
    p.add_argument("--labels", default="A,B", help="two names, comma-separated")
    add_report_and_out(p)
    args = p.parse_args(argv)
    labels = tuple(args.labels.split(","))
    if len(labels) != 2 or not all(labels):
        raise SystemExit(f"offline_compare: --labels {args.labels!r}: expected two names "
                         "separated by one comma")
    try:
        result = paired(_load(args.a), _load(args.b), args.report)
    except ValueError as e:
        raise SystemExit(f"offline_compare: {e}") from None
    if not result["rows"]:
        raise SystemExit(f"offline_compare: {args.a} and {args.b} share no (task, rows) row")
    emit(markdown(result, labels, args.report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
