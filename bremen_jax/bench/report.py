"""Markdown tables from benchmark results: ``python -m bremen_jax.bench.report FILE...
[--out F.md]`` (in a checkout also ``python -m benchmarks.report``).

For each file: the machine and the matmul peaks, one row per phase (size, compile s, steady s,
throughput, GFLOP/s, % of peak, memory), the TRPO iteration's breakdown, the projection of the
whole run per precision, and the targets. Files that are not suite results (no ``phases`` list,
e.g. the first hand-written results) are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Sequence

from bremen_jax.bench.common import device_slug
from bremen_jax.bench.targets import evaluate_targets


def _num(x: Any, fmt: str = ".3g") -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return format(x, fmt)
    return str(x)


def _duration(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.1f} s"
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def _size(sizes: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sizes.items()).replace("'", "")


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def _table(header: Sequence[str], rows: list[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return "\n".join([_row(header), _row(sep), *(_row(r) for r in rows)])


SECONDARY = {"transitions_per_s": "transitions/s", "samples_per_s": "samples/s",
             "iterations_per_s": "iterations/s"}


def _secondary(r: dict) -> str:
    extra = [f"{_num(v, ',.0f' if v >= 100 else '.3g')} {SECONDARY[k]}"
             for k, v in r.get("extra", {}).items()
             if k in SECONDARY]
    return f" ({', '.join(extra)})" if extra else ""


def phase_rows(doc: dict) -> list[list[str]]:
    rows, prev = [], None
    for r in doc["phases"]:
        if "error" in r:
            rows.append([r["name"], r["precision"], f"ERROR: {r['error']}", *["–"] * 6])
            continue
        frac = r.get("fraction_of_peak")
        mem = r.get("peak_memory_bytes")
        mem_s = _bytes(mem) if mem is not None else (
            f"{_bytes(r.get('program_bytes'))} (program)" if r.get("program_bytes") else "–")
        size = "same as above" if r["sizes"] == prev else _size(r["sizes"])
        prev = r["sizes"]
        rows.append([
            r["name"], r["precision"], size, _num(r["compile_s"], ".2f"),
            f"{_num(r['median_s'], '.4g')} / {_num(r['min_s'], '.4g')} ({r['repeats']})",
            f"{_num(r['throughput'], ',.0f')} {r['throughput_unit']}" + _secondary(r),
            _num(r.get("gflops"), ".1f"), "–" if frac is None else f"{100 * frac:.1f}%", mem_s])
    return rows


def breakdown_table(doc: dict) -> str:
    parts = []
    for r in doc["phases"]:
        if r.get("name") == "trpo_iteration" and "error" not in r:
            total = r["median_s"]
            rows = [[k, _num(v, ".4f"), f"{100 * v / total:.0f}%"]
                    for k, v in r["extra"]["breakdown_s"].items()]
            rows.append(["whole iteration (timed on its own)", _num(total, ".4f"), "100%"])
            parts.append(f"TRPO iteration at {r['precision']} (each part jitted and timed on its "
                         "own; `rest` = whole - parts: fusion across parts, dispatch, "
                         "noise):\n\n" + _table(["part", "seconds", "share"], rows))
    return "\n\n".join(parts)


def projection_section(doc: dict) -> str:
    out = []
    for p, proj in doc.get("projection", {}).items():
        if not proj:
            continue
        rows = [[t["term"], _num(t["count"], ",.0f"), t["unit"], _num(t["s_per_unit"], ".4g"),
                 _duration(t["seconds"]), t["measured"],
                 "measured" if t["full_size"] else ("–" if t["full_size"] is None
                                                    else "extrapolated"), t["note"]]
                for t in proj["terms"]]
        c = proj["counts"]
        what = ("the paper's HalfCheetah run" if proj.get("paper_halfcheetah")
                else f"a full run of the `{doc['config']}` config")
        rows.append(["**total**", "", "", "", f"**{_duration(proj['total_s'])}**",
                     "" if proj["complete"] else "incomplete: some phases not measured", "", ""])
        text = (f"Projection of {what} at precision `{p}` on {device_slug(doc['device'])} "
                f"({doc['device']['device_kind']}):\n\n"
                + _table(["term", "count", "unit", "s per unit", "projected", "measured as",
                          "at full size?", "counts"], rows, "lrlrrlll")
                + "\n\nWith every ensemble fit stopped early at "
                f"{c['fit_epochs_early_stop']} epochs (patience + 1) instead of {c['fit_epochs']}: "
                f"{_duration(proj['total_s_fit_early_stop'])}.")
        if proj.get("per_deployment_s"):
            text += (" Projected deployments (without compiling; the fit grows with the data): "
                     + ", ".join(_duration(x) for x in proj["per_deployment_s"]) + ".")
        check = (doc.get("deployment_check") or {}).get(p)
        if check:
            text += (f" Check: one measured deployment took {_duration(check['measured_s'])}; "
                     f"the same arithmetic (fit at the {check['fit_epochs']} epochs it ran) "
                     f"projects {_duration(check['projected_s'])} "
                     f"(measured / projected = {check['measured_over_projected']:.2f}).")
        out.append(text)
    return "\n\n".join(out)


def targets_table(doc: dict) -> str:
    targets = doc.get("targets")
    if targets is None:
        targets = evaluate_targets(doc)
    if not targets:
        return ""
    rows = []
    for t in targets:
        v = t["value"]
        fmt = ".1%" if t["metric"] == "fraction_of_peak" else ".4g"
        met = "–" if t["met"] is None else ("met" if t["met"] else "**missed**")
        rows.append([t["description"], t["precision"], _num(v, fmt), f"{t['op']} "
                     f"{_num(t['target'], fmt)}", met,
                     "yes" if t["applies"] else "no (sizes differ)"])
    return _table(["target", "precision", "value", "target", "result", "at the target's sizes?"],
                  rows, "llrrll")


def render(doc: dict, source: str | None = None) -> str:
    """Markdown for one result document."""
    d = doc["device"]
    git = doc.get("git") or {}
    commit = (git.get("commit") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
    overrides = " " + " ".join(doc["overrides"]) if doc.get("overrides") else ""
    head = (f"## Benchmarks: `{doc['suite']}` suite on {device_slug(d)} ({d['device_kind']})\n\n"
            f"{doc['date']}, jax {doc['jax_version']} ({doc['backend']}), commit {commit}, "
            f"config `{doc['config']}`{overrides}"
            f", {d['num_devices']} device(s), {d['cpu_count']} CPU cores, load average "
            f"{d.get('load_avg_start')} at the start and {d.get('load_avg_end')} at the end, "
            f"suite wall time {_duration(doc.get('wall_s'))}"
            + (f"; raw results: `{source}`" if source else "") + "."
            + (" **Partial**: the suite stopped (a time limit?) before its end; the tables "
               "hold the phases it measured." if doc.get("finished") is False else ""))
    peaks = _table(["precision", "matmul peak GFLOP/s (start)", "at the end", "measured with"],
                   [[p, _num(m["gflops"], ".1f"),
                     _num(doc.get("matmul_peak_end_gflops", {}).get(p), ".1f"),
                     f"{m['dtype']} inputs, {m['what']}"]
                    for p, m in doc["matmul_peak"].items()], "lrrl")
    phases = _table(["phase", "precision", "size", "compile s", "steady s (median / min, n)",
                     "throughput", "GFLOP/s", "% of peak", "memory"], phase_rows(doc),
                    "lllrrrrrr")
    flops = "; ".join(sorted({f"{r['name']}: {r['flop_formula']}" for r in doc["phases"]
                              if r.get("flop_formula")}))
    parts = [head, peaks, phases,
             "FLOPs per call (matmul FLOPs of the MLPs; a gradient = 3 forwards, a Gauss-Newton "
             "FVP = 4, a Hessian-vector FVP = 6; "
             "F = one forward row): " + flops + ". Memory: the backend's peak where it reports "
             "one, else the bytes XLA assigns to the compiled program.",
             breakdown_table(doc), projection_section(doc), targets_table(doc)]
    return "\n\n".join(p for p in parts if p) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bremen_jax.bench.report",
                                 description="Markdown tables from benchmark result JSONs.")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", default=None, help="write the markdown here (default: stdout)")
    args = ap.parse_args(argv)
    texts = []
    for f in args.files:
        try:
            doc = json.loads(pathlib.Path(f).read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"error: cannot read {f}: {e}", file=sys.stderr)
            return 2
        if not isinstance(doc, dict) or not isinstance(doc.get("phases"), list):
            print(f"skipped {f}: not a benchmark suite result (no 'phases' list)", file=sys.stderr)
            continue
        texts.append(render(doc, source=f))
    if not texts:
        print("error: no benchmark result among the files", file=sys.stderr)
        return 1
    text = "\n".join(texts)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
