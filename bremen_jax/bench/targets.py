"""The benchmark targets of issue 7, evaluated on a suite result document.

:func:`evaluate_targets` is used by :mod:`bremen_jax.bench.suite` (stored in the result) and by
:mod:`bremen_jax.bench.report` (for results written without targets); it imports neither.
"""

from __future__ import annotations


def _target(desc, phase, precision, metric, op, threshold, value, applies):
    met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    return {"description": desc, "phase": phase, "precision": precision, "metric": metric,
            "op": op, "target": threshold, "value": value, "met": met, "applies": applies}


def evaluate_targets(doc: dict) -> list[dict]:
    """The issue's targets against the measured values. ``applies`` is False where the measured
    sizes are not the ones the target names (e.g. the quick suite)."""
    by = {(r["name"], r["precision"]): r for r in doc["phases"] if "error" not in r}
    paper_ens = "5x[1024, 1024]"

    def get(name, prec, metric):
        r = by.get((name, prec))
        if r is None:
            return None, {}
        return r.get(metric), r["sizes"]

    out = []
    if doc["device"]["platform"] == "cpu":
        p = "highest"
        for name in ("ensemble_fit", "ensemble_step"):
            v, s = get(name, p, "fraction_of_peak")
            out.append(_target(f"{name}: >= 85% of the float32 matmul peak (5 x 2x1024, batch "
                               "1000)", name, p, "fraction_of_peak", ">=", 0.85, v,
                               s.get("ensemble") == paper_ens and s.get("batch") == 1000))
        v, s = get("imagined_rollout", p, "fraction_of_peak")
        at_50k = (s.get("imagined_transitions") == 50_000 and s.get("horizon") == 250
                  and s.get("ensemble") == paper_ens)
        out.append(_target("imagined rollout: >= 60% of the matmul peak", "imagined_rollout", p,
                           "fraction_of_peak", ">=", 0.60, v, at_50k))
        v, s = get("trpo_iteration", p, "median_s")
        out.append(_target("one TRPO iteration on 50K imagined transitions (H=250, linear "
                           "baseline): <= 3 s", "trpo_iteration", p, "median_s", "<=", 3.0, v,
                           at_50k and s.get("baseline") == "linear"))
        v, s = get("bc", p, "throughput")
        out.append(_target("BC: >= 1,000 steps/s at batch 256 (200-200 policy)", "bc", p,
                           "throughput", ">=", 1000.0, v,
                           s.get("batch") == 256 and s.get("policy") == [200, 200]))
        return out
    for p in doc["precision"]:
        proj = doc.get("projection", {}).get(p, {})
        out.append(_target("projected paper HalfCheetah run: < 10 minutes", "projection", p,
                           "total_s", "<=", 600.0, proj.get("total_s"),
                           bool(proj.get("paper_halfcheetah")) and bool(proj.get("complete"))))
        for name in ("ensemble_fit", "imagined_rollout"):
            v, s = get(name, p, "fraction_of_peak")
            out.append(_target(f"{name}: >= 40% of the matmul peak at this precision", name, p,
                               "fraction_of_peak", ">=", 0.40, v,
                               s.get("ensemble") == paper_ens))
    return out
