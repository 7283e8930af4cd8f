"""Pool seeded offline tables of one protocol over dataset draws, against BC and the behaviour.

``python -m experiments.offline_pool T1.json T2.json ... [--report bremen_final] [--out FILE.md]``

Each ``T*.json`` is an :mod:`experiments.offline_table` output (``--seeds N``) on its own dataset
draw (a fresh collection of the same behaviour policy; another VM's floats give another draw).
Rows are pooled by (task, rows) over the files: BREMEN's report and BC (normalised score,
mean ± std over every seed of every draw), the behaviour's score per draw, and BREMEN − BC
**paired within each seed** (same dataset and seed), mean ± its standard error. The last column
applies the issue's offline target to the pooled means: BREMEN ≥ BC and ≥ every draw's
behaviour. One draw's 5 seeds share that draw's luck, which is why single tables of halfcheetah
flip sides of BC (README, "Offline results"); pooling draws averages it out.
"""

from __future__ import annotations

import sys

from experiments.offline_compare import (_load, _mean_se, _mean_std, _scores,
                                         add_report_and_out, emit)
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors


def pool(docs: list[dict], report: str = "bremen_final") -> list[dict]:
    """Per (task, size), in first-seen order: ``{"task", "size", "draws", "n", "bremen", "bc",
    "behavior", "diff_mean", "diff_se", "meets"}`` with per-seed normalised scores in ``bremen`` /
    ``bc``, one behaviour score per draw, and ``meets`` = pooled BREMEN mean ≥ pooled BC mean and
    ≥ every draw's behaviour. A row without ``report`` raises ``ValueError`` naming it."""
    out: dict[tuple, dict] = {}
    for i, doc in enumerate(docs):
        for r in doc["rows"]:
            if report not in r["returns"]:
                raise ValueError(f"table {i + 1}, {r['task']} {r['size']:,} rows: no '{report}' "
                                 f"report (have {sorted(r['returns'])})")
            p = out.setdefault((r["task"], r["size"]), {
                "task": r["task"], "size": r["size"], "draws": 0, "bremen": [], "bc": [],
                "behavior": [], "diffs": []})
            b, c = _scores(r, report), _scores(r, "bc")
            lo, hi = r["reference_returns"]["random"], r["reference_returns"]["expert"]
            p["draws"] += 1
            p["bremen"] += b
            p["bc"] += c
            p["behavior"].append(100.0 * (r["behavior_return"] - lo) / (hi - lo))
            p["diffs"] += [x - y for x, y in zip(b, c)]
    rows = []
    for p in out.values():
        m, se = _mean_se(p.pop("diffs"))
        mb, mc = _mean_se(p["bremen"])[0], _mean_se(p["bc"])[0]
        rows.append({**p, "n": len(p["bremen"]), "diff_mean": m, "diff_se": se,
                     "meets": mb >= mc and all(mb >= x for x in p["behavior"])})
    return rows


def markdown(rows: list[dict], report: str = "bremen_final") -> str:
    """The pooled table (normalised scores)."""
    def ms(xs):
        m, s = _mean_std(xs)
        return f"{m:.1f} ± {s:.1f}"

    lines = [f"Offline `{report}` pooled over dataset draws (normalised score, mean ± std over "
             "every seed of every draw; BREMEN − BC paired within each seed, mean ± standard "
             "error).", "",
             "| task | rows | draws × seeds | behaviour (per draw) | BC | BREMEN | BREMEN − BC "
             "| ≥ BC and ≥ behaviour |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        beh = ", ".join(f"{x:.1f}" for x in r["behavior"])
        lines.append(f"| {r['task']} | {r['size']:,} | {r['draws']} × {r['n'] // r['draws']} | "
                     f"{beh} | {ms(r['bc'])} | {ms(r['bremen'])} | "
                     f"{r['diff_mean']:+.2f} ± {r['diff_se']:.2f} | "
                     f"{'met' if r['meets'] else 'missed'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+", help="offline table JSONs, one per dataset draw")
    add_report_and_out(p)
    args = p.parse_args(argv)
    try:
        rows = pool([_load(t) for t in args.tables], args.report)
    except ValueError as e:
        raise SystemExit(f"offline_pool: {e}") from None
    if not rows:
        raise SystemExit("offline_pool: the tables hold no rows")
    emit(markdown(rows, args.report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
