"""Learning-curve results: the JSON schema and its validator, the plots and the markdown table.

Document (``benchmarks/results/learning-<device>-<date>.json``)::

    {"device": str, "date": "YYYY-MM-DD", "commit": str, "protocol": str,
     "tasks": {task: {algorithm: {
         "samples": [int, ...],             # real environment steps, increasing, same for every
                                            #   algorithm of a task
         "returns": [[float per seed] per sample count],
         "seeds": [int, ...],
         "deployments": int | null,         # BREMEN: its number of deployments; SAC/PPO: null
         "deployments_at": [int per sample count],  # policies deployed to collect data so far
         "wall_s": [float, ...],            # seconds of each program run (see "wall_s_covers")
         "wall_s_covers": str,
         "config": {...}}}}}

``deployments_at`` counts the distinct policies that collected real data up to each sample count:
BREMEN k after deployment k; SAC one per actor step after its prefill (each follows a gradient
update) plus the prefill's initial policy; PPO one per training step (each collects its batch with
the policy of the previous update).
"""

from __future__ import annotations

import itertools
import math
import pathlib

import numpy as np
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors

ENTRY_KEYS = ("samples", "returns", "seeds", "deployments", "deployments_at", "wall_s", "config")
COLORS = {"bremen": "tab:blue", "sac": "tab:orange", "ppo": "tab:green",
          "bremen_sampling": "tab:purple", "bremen_sampling_kl01": "tab:brown",
          "bremen_sampling_kl005": "tab:olive",
          "bremen_sampling_kl01_long": "tab:red",
          "bremen_sampling_kl01_pen": "tab:pink"}


def _fail(where: str, what: str):
    raise ValueError(f"learning-curves JSON: {where}: {what}")


def _check_entry(where: str, e: dict) -> None:
    if not isinstance(e, dict) or set(ENTRY_KEYS) - set(e):
        _fail(where, f"expected a dict with keys {list(ENTRY_KEYS)}, got "
                     f"{sorted(e) if isinstance(e, dict) else type(e).__name__}")
    samples, returns, seeds = e["samples"], e["returns"], e["seeds"]
    if (not samples or not all(isinstance(s, int) and s > 0 for s in samples)
            or any(b <= a for a, b in itertools.pairwise(samples))):
        _fail(where, f"samples must be increasing positive ints, got {samples}")
    if not seeds or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        _fail(where, f"seeds must be distinct ints, got {seeds}")
    if (not isinstance(returns, list) or len(returns) != len(samples)
            or not all(isinstance(r, list) and len(r) == len(seeds) for r in returns)):
        _fail(where, f"returns must be [[per seed] per sample count]: {len(samples)} lists of "
                     f"{len(seeds)}")
    if not all(isinstance(x, (int, float)) for r in returns for x in r):
        _fail(where, "returns must be numbers")
    d = e["deployments"]
    if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d <= 0):
        _fail(where, f"deployments must be a positive int or null, got {d!r}")
    da = e["deployments_at"]
    if (len(da) != len(samples) or not all(isinstance(x, int) and x >= 1 for x in da)
            or any(b < a for a, b in itertools.pairwise(da))):
        _fail(where, f"deployments_at must be non-decreasing ints >= 1 per sample count, "
                     f"got {da}")
    if not e["wall_s"] or not all(isinstance(w, (int, float)) and w >= 0 for w in e["wall_s"]):
        _fail(where, f"wall_s must be a non-empty list of seconds, got {e['wall_s']}")
    if not isinstance(e["config"], dict):
        _fail(where, "config must be a dict")


def validate(doc: dict) -> None:
    """Raises ValueError (naming the entry) unless ``doc`` follows the schema above, including
    equal ``samples`` across the algorithms of each task."""
    for key in ("device", "date", "commit", "tasks"):
        if key not in doc:
            _fail("top level", f"missing key {key!r}")
    if not isinstance(doc["tasks"], dict) or not doc["tasks"]:
        _fail("tasks", "expected a non-empty dict task -> {algorithm: entry}")
    for task, algos in doc["tasks"].items():
        if not isinstance(algos, dict) or not algos:
            _fail(task, "expected a non-empty dict algorithm -> entry")
        for algo, e in algos.items():
            _check_entry(f"{task}/{algo}", e)
        samples = {algo: tuple(e["samples"]) for algo, e in algos.items()}
        if len(set(samples.values())) != 1:
            _fail(task, f"samples differ across algorithms: {samples}")


def stats(returns: list) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof=1; 0 for one seed) over seeds, per sample count."""
    a = np.asarray(returns, np.float64)
    std = a.std(axis=1, ddof=1) if a.shape[1] > 1 else np.zeros(a.shape[0])
    return a.mean(axis=1), std


def _fmt(m: float, s: float) -> str:
    return "n/a" if math.isnan(m) else f"{m:,.1f} ± {s:,.1f}"


def markdown_table(doc: dict) -> str:
    """Task x algorithm, mean ± std over seeds at each sample count."""
    lines = []
    for task, algos in doc["tasks"].items():
        samples = next(iter(algos.values()))["samples"]
        lines += [f"### {task}", "",
                  "| algorithm | seeds | " + " | ".join(f"{s:,}" for s in samples) + " |",
                  "|---|---|" + "---|" * len(samples)]
        for algo, e in algos.items():
            m, s = stats(e["returns"])
            lines.append(f"| {algo} | {len(e['seeds'])} | "
                         + " | ".join(_fmt(a, b) for a, b in zip(m, s)) + " |")
        lines.append("")
    return "\n".join(lines)


def colors_for(algos) -> dict[str, str]:
    """A distinct colour per algorithm of one figure: ``COLORS``' fixed ones, then the other
    Tableau colours (tab10, then tab20's lighter shades) for the rest, in order (matplotlib's
    own cycle would give a variant SAC's orange)."""
    import matplotlib
    import matplotlib.colors as mcolors

    algos = list(algos)
    out = {a: COLORS[a] for a in algos if a in COLORS}
    palette = list(mcolors.TABLEAU_COLORS) + [
        mcolors.to_hex(c) for c in matplotlib.colormaps["tab20"].colors[1::2]]
    used = {mcolors.to_hex(c) for c in out.values()}
    free = (c for c in palette if mcolors.to_hex(c) not in used)
    for a in algos:
        if a not in out:
            out[a] = next(free, None)
    return out


def _band(ax, x, e, algo, color, marker="o"):
    m, s = stats(e["returns"])
    ax.plot(x, m, marker=marker, ms=4, color=color, label=f"{algo} ({len(e['seeds'])} seeds)")
    ax.fill_between(x, m - s, m + s, color=color, alpha=0.2, lw=0)


def plot_task(task: str, algos: dict, path: pathlib.Path) -> None:
    """Return vs real samples (mean ± std) with BREMEN's deployment ends marked; and return vs
    deployments (log x)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    marked = False
    colors = colors_for(algos)
    for algo, e in algos.items():
        _band(ax1, e["samples"], e, algo, colors[algo])
        _band(ax2, e["deployments_at"], e, algo, colors[algo])
        if e["deployments"] is not None and not marked:  # a BREMEN variant: its deployments
            marked = True                                  # (the same sample counts for all)
            for s in e["samples"]:
                ax1.axvline(s, color=COLORS["bremen"], ls=":", lw=0.8, alpha=0.6)
    ax1.set(xlabel="real environment steps", ylabel="deterministic return (mean ± std)",
            title=f"{task}: return vs samples (dotted: BREMEN deployments)")
    ax2.set_xscale("log")
    ax2.set(xlabel="policies deployed (log; SAC/PPO: one per update)", ylabel="return",
            title=f"{task}: return vs deployments")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    # one legend for both panels, below them, so that it never hides a curve or a band
    handles, labels = ax1.get_legend_handles_labels()
    ncol = min(3, max(1, len(labels)))
    rows = -(-len(labels) // ncol)
    fig.set_size_inches(12, 4.5 + 0.25 * rows)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    _save(fig, path, bottom=(0.25 * rows + 0.15) / (4.5 + 0.25 * rows))


def _save(fig, path: pathlib.Path, bottom: float = 0.0) -> None:
    """Lays out (above ``bottom``, a fraction of the height kept for a figure legend), writes
    (creating the folder) and closes ``fig``."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, bottom, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_deployments(doc: dict, path: pathlib.Path) -> None:
    """The paper's signature plot: every task in one figure, return vs deployments (log x)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(doc["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        colors = colors_for(doc["tasks"][task])
        for algo, e in doc["tasks"][task].items():
            _band(ax, e["deployments_at"], e, algo, colors[algo])
        ax.set_xscale("log")
        ax.set(title=task, xlabel="policies deployed (log)", ylabel="return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def write_outputs(doc: dict, out: pathlib.Path) -> list[pathlib.Path]:
    """Writes the JSON (validated), ``<stem>.md``, ``<stem>-<task>.png`` and
    ``<stem>-deployments.png`` next to it; returns the paths."""
    import json

    validate(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    md = out.with_suffix(".md")
    md.write_text(f"# Learning curves ({doc['device']}, {doc['date']}, {doc['commit']})\n\n"
                  "Deterministic return, mean ± std over seeds, at each number of real "
                  "environment steps.\n\n" + markdown_table(doc))
    paths = [out, md]
    for task, algos in doc["tasks"].items():
        p = out.with_name(f"{out.stem}-{task}.png")
        plot_task(task, algos, p)
        paths.append(p)
    p = out.with_name(f"{out.stem}-deployments.png")
    plot_deployments(doc, p)
    return paths + [p]


def pool_entries(where: str, a: dict, b: dict) -> dict:
    """One entry from two runs of one algorithm on disjoint seeds (e.g. seeds 0-4, then 5-9):
    seeds, per-sample-count returns and ``wall_s`` concatenated, seeds in increasing order of
    the runs' first seeds. The runs must agree on ``samples``, ``deployments``,
    ``deployments_at`` and ``config`` apart from its ``workdir`` (kept as the list of both).
    Raises ValueError naming ``where`` and what differs."""
    if set(a["seeds"]) & set(b["seeds"]):
        raise ValueError(f"learning-curves merge --pool: {where}: seeds "
                         f"{sorted(set(a['seeds']) & set(b['seeds']))} are in two runs; "
                         "expected disjoint seeds")
    for key in ("samples", "deployments", "deployments_at"):
        if a[key] != b[key]:
            raise ValueError(f"learning-curves merge --pool: {where}: {key} differ "
                             f"({a[key]} against {b[key]}); expected equal")
    ca = {k: v for k, v in a["config"].items() if k != "workdir"}
    cb = {k: v for k, v in b["config"].items() if k != "workdir"}
    if ca != cb:
        keys = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
        raise ValueError(f"learning-curves merge --pool: {where}: config differs in {keys}; "
                         "expected the same configuration on every seed")
    first, second = (a, b) if min(a["seeds"]) < min(b["seeds"]) else (b, a)
    out = dict(first, seeds=first["seeds"] + second["seeds"],
               returns=[x + y for x, y in zip(first["returns"], second["returns"])],
               wall_s=first["wall_s"] + second["wall_s"], config=dict(first["config"]))
    dirs: list = []
    for e in (first, second):
        w = e["config"].get("workdir")
        for x in (w if isinstance(w, list) else [w]):
            if x is not None and x not in dirs:
                dirs.append(x)
    if dirs:
        out["config"]["workdir"] = dirs
    return out


def merge(docs: list[dict], pool: bool = False) -> dict:
    """One document from several runs of the harness (e.g. algorithms run side by side into
    their own files): the same episodes per evaluation and, per task, the same sample counts
    for every algorithm (protocols may differ by name where they give the same samples, e.g. a
    ``quick`` run of a ``_b32k`` variant beside ``quick_b32k`` baselines; ``protocol`` then lists
    them); a later (task, algorithm) entry replaces an earlier one, or with ``pool`` joins it
    as more seeds (:func:`pool_entries`); ``commit`` lists every commit involved. Raises
    ValueError naming what differs."""
    if not docs:
        raise ValueError("learning-curves merge: no documents given")
    episodes = {d.get("episodes_per_evaluation") for d in docs}
    if len(episodes) > 1:
        raise ValueError(f"learning-curves merge: the documents differ in episodes per "
                         f"evaluation: {sorted(episodes, key=str)}; expected one")
    out = dict(docs[-1], tasks={})
    commits, protocols = [], []
    for d in docs:
        validate(d)
        commits += [c for c in str(d["commit"]).split(", ") if c not in commits]
        if d.get("protocol"):
            protocols += [p for p in str(d["protocol"]).split(", ") if p not in protocols]
        for task, algos in d["tasks"].items():
            have = out["tasks"].setdefault(task, {})
            for algo, e in algos.items():
                have[algo] = (pool_entries(f"{task}/{algo}", have[algo], e)
                              if pool and algo in have else e)
    out["commit"] = ", ".join(commits)
    if protocols:
        out["protocol"] = ", ".join(protocols)
    out["wall_s_total"] = round(sum(float(d.get("wall_s_total", 0.0)) for d in docs), 1)
    try:
        validate(out)
    except ValueError as e:
        raise ValueError(f"learning-curves merge: {e}") from None
    return out


def summary_rows(docs: list[dict], task: str, threshold: float, set_size: int = 5,
                 need: int = 4) -> list[dict]:
    """One row per (algorithm, seeds) of ``task`` over the documents, then one pooled row per
    algorithm found with disjoint seeds at the same sample counts in several documents (e.g. a
    variant chosen on seeds 0-4, then checked on seeds 5-9).

    Row: ``algorithm``, ``seeds``, ``samples`` (the last count), ``final`` (per seed, at it),
    ``mean``/``std`` (sample std) of ``final``, ``at_least`` (seeds with ``final >= threshold``),
    ``second_above_first`` (seeds whose return at the second sample count is above the first's:
    BREMEN's deployment 2 against deployment 1; ``None`` with one count), ``pooled`` and
    ``target_sets``: ``(met, of)``, how many of the ``of`` sets of ``set_size`` of the row's seeds
    meet issue 11's default-train target on their own (at least ``need`` of them end at or above
    ``threshold`` *and* every one has its second return above its first), ``None`` with fewer
    seeds than ``set_size`` or one sample count (:func:`target_sets`).
    """
    entries = []
    for d in docs:
        validate(d)
        for algo, e in d["tasks"].get(task, {}).items():
            entries.append((algo, e))
    if not entries:
        raise ValueError(f"learning-curves summary: no document has task {task!r}")

    def row(algo, samples, returns, seeds, pooled):
        a = np.asarray(returns, np.float64)             # [sample counts, seeds]
        m, s = stats(returns)
        above = a[-1] >= threshold                      # [seeds]
        rising = a[1] > a[0] if len(a) > 1 else None     # [seeds]
        return {"algorithm": algo, "seeds": list(seeds), "samples": int(samples[-1]),
                "final": a[-1].tolist(), "mean": float(m[-1]), "std": float(s[-1]),
                "at_least": int(above.sum()),
                "second_above_first": None if rising is None else int(rising.sum()),
                "pooled": pooled,
                "target_sets": None if rising is None else target_sets(above, rising,
                                                                       set_size, need)}

    rows, seen = [], set()
    for algo, e in entries:
        key = (algo, tuple(e["seeds"]), tuple(e["samples"]))
        if key not in seen:
            seen.add(key)
            rows.append(row(algo, e["samples"], e["returns"], e["seeds"], False))
    by_algo: dict = {}
    for algo, e in entries:
        by_algo.setdefault((algo, tuple(e["samples"])), {})[tuple(e["seeds"])] = e
    for (algo, samples), parts in by_algo.items():
        parts = dict(sorted(parts.items()))             # pooled seeds in increasing order
        seeds = [x for k in parts for x in k]
        if len(parts) > 1 and len(seeds) == len(set(seeds)):
            returns = np.concatenate([np.asarray(e["returns"], np.float64)
                                      for e in parts.values()], axis=1)
            rows.append(row(algo, list(samples), returns.tolist(), seeds, True))
    return rows


def target_sets(above: np.ndarray, rising: np.ndarray, set_size: int,
                need: int) -> tuple[int, int] | None:
    """How many ``set_size``-subsets of the seeds have at least ``need`` seeds ``above`` and every
    seed ``rising``, out of how many: ``(met, C(n, set_size))``; ``None`` when ``n < set_size``.

    ``above``, ``rising``: ``[n]`` bool per seed. Counted exactly: a qualifying set takes only
    rising seeds, ``j >= need`` of them above, so ``met = sum_j C(ra, j) C(rb, set_size - j)``
    with ``ra``/``rb`` the rising seeds above/below. It answers "would a fresh draw of
    ``set_size`` seeds, like the ones pooled here, meet the target?" with the pooled seeds' own
    frequencies (sampling without replacement), not one seed set's yes or no.
    """
    above, rising = np.asarray(above, bool), np.asarray(rising, bool)
    n = above.size
    if n < set_size:
        return None
    ra, rb = int((above & rising).sum()), int((~above & rising).sum())
    met = sum(math.comb(ra, j) * math.comb(rb, set_size - j) for j in range(need, set_size + 1))
    return met, math.comb(n, set_size)


def summary_table(rows: list[dict], threshold: float, set_size: int = 5, need: int = 4) -> str:
    """Markdown of :func:`summary_rows` (the last column: ``target_sets``)."""
    lines = ["| algorithm | seeds | real steps | final, mean ± std | per seed | "
             f"≥ {threshold:,.0f} | 2nd > 1st | "
             f"{set_size}-seed sets with ≥ {need} and all 2nd > 1st |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        seeds = r["seeds"]
        span = (f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1))
                else ",".join(map(str, seeds)))
        name = r["algorithm"] + (" (pooled)" if r["pooled"] else "")
        n = len(seeds)
        second = "n/a" if r["second_above_first"] is None else f"{r['second_above_first']}/{n}"
        ts = r["target_sets"]
        sets = "n/a" if ts is None else f"{ts[0]}/{ts[1]} ({100 * ts[0] / ts[1]:.0f}%)"
        lines.append(f"| {name} | {span} | {r['samples']:,} | {_fmt(r['mean'], r['std'])} | "
                     + ", ".join(f"{x:,.0f}" for x in r["final"])
                     + f" | {r['at_least']}/{n} | {second} | {sets} |")
    return "\n".join(lines)


def paired_rows(rows: list[dict], reference: str) -> list[dict]:
    """Each other algorithm against ``reference`` on the seeds both ran, seed by seed (the runs of
    one seed share their data, model and clone up to where the algorithms first act differently,
    so a per-seed difference is paired evidence; e.g. an option that changes nothing until a
    check binds gives identical numbers wherever it never binds).

    ``rows``: :func:`summary_rows`; of each algorithm the row with the most seeds is used (its
    pooled row where it has one). Row: ``algorithm``, ``seeds`` (shared, increasing),
    ``differences`` (``final − reference's final`` per shared seed), ``identical`` (exactly 0),
    ``higher``, ``lower``, ``mean`` and ``se`` (standard error, sample std / √n; 0 for one seed)
    of the differences. Raises ValueError when ``reference`` is not in ``rows``.
    """
    best = _largest_rows(rows, reference, "paired")
    ref = dict(zip(best[reference]["seeds"], best[reference]["final"]))
    out = []
    for algo, r in best.items():
        mine = dict(zip(r["seeds"], r["final"]))
        seeds = sorted(set(mine) & set(ref))
        if algo == reference or not seeds:
            continue
        d = np.asarray([mine[x] - ref[x] for x in seeds], np.float64)
        se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
        out.append({"algorithm": algo, "seeds": seeds, "differences": d.tolist(),
                    "identical": int((d == 0).sum()), "higher": int((d > 0).sum()),
                    "lower": int((d < 0).sum()), "mean": float(d.mean()), "se": se})
    return out


def _largest_rows(rows: list[dict], reference: str, what: str) -> dict[str, dict]:
    """Per algorithm its row with the most seeds (the pooled row on a tie); ValueError naming
    ``what`` when ``reference`` has none."""
    best: dict[str, dict] = {}
    for r in rows:
        b = best.get(r["algorithm"])
        if b is None or (len(r["seeds"]), r["pooled"]) > (len(b["seeds"]), b["pooled"]):
            best[r["algorithm"]] = r
    if reference not in best:
        raise ValueError(f"learning-curves {what}: no row of algorithm {reference!r}; "
                         f"expected one of {sorted(best)}")
    return best


def compared_rows(rows: list[dict], reference: str) -> list[dict]:
    """Each other algorithm's end point against ``reference``'s over their own seeds, unpaired
    (e.g. a baseline run on seeds 0-9 against BREMEN's 0-19: different algorithms share no
    data, so nothing pairs their seeds).

    ``rows``: :func:`summary_rows`; of each algorithm the row with the most seeds (its pooled
    row where it has one); only rows at ``reference``'s real-sample count. Row: ``algorithm``,
    ``n``, ``mean``, ``std`` (sample), ``median``; ``reference_n``, ``reference_mean``,
    ``reference_median``; ``difference`` (mean − reference's mean), ``se`` (Welch:
    ``sqrt(std² / n + std_ref² / n_ref)``) and ``z`` (difference / se, ``nan`` when se is 0);
    rank-based, for bimodal or heavy-tailed ends where a mean and its SE say little:
    ``p_above``, the probability that a seed of the algorithm ends above a seed of the
    reference (ties count half; the Mann-Whitney U over ``n * reference_n``), and ``mw_p``,
    the two-sided Mann-Whitney p-value (scipy: exact for small tie-free samples, else the normal
    approximation). Raises ValueError when ``reference`` is not in ``rows``.
    """
    from scipy import stats

    best = _largest_rows(rows, reference, "compare")
    ref = best[reference]
    ref_n = len(ref["final"])
    out = []
    for algo, r in best.items():
        if algo == reference or r["samples"] != ref["samples"]:
            continue
        n = len(r["final"])
        se = math.sqrt(r["std"] ** 2 / n + ref["std"] ** 2 / ref_n)  # stats: std 0 for 1 seed
        diff = r["mean"] - ref["mean"]
        # U of the algorithm's seeds: pairs it ends above the reference, ties counting half
        mw = stats.mannwhitneyu(np.asarray(r["final"], float), np.asarray(ref["final"], float),
                                alternative="two-sided")
        out.append({"algorithm": algo, "n": n, "mean": r["mean"], "std": r["std"],
                    "median": float(np.median(r["final"])), "reference_n": ref_n,
                    "reference_mean": ref["mean"],
                    "reference_median": float(np.median(ref["final"])),
                    "difference": diff, "se": se, "z": diff / se if se > 0 else math.nan,
                    "p_above": float(mw.statistic) / (n * ref_n), "mw_p": float(mw.pvalue)})
    return out


def compared_table(rows: list[dict], reference: str) -> str:
    """Markdown of :func:`compared_rows`."""
    lines = [f"| algorithm | seeds | final, mean ± std (median) | {reference} | "
             "difference ± SE (Welch) | difference / SE | P(seed above a reference seed) | "
             "p (Mann–Whitney) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['algorithm']} | {r['n']} | {_fmt(r['mean'], r['std'])} "
                     f"({r['median']:,.0f}) | {r['reference_mean']:,.1f} over "
                     f"{r['reference_n']} ({r['reference_median']:,.0f}) | "
                     f"{r['difference']:+,.1f} ± {r['se']:,.1f} | {r['z']:+.2f} | "
                     f"{r['p_above']:.2f} | {r['mw_p']:.2f} |")
    return "\n".join(lines)


def paired_table(rows: list[dict], reference: str) -> str:
    """Markdown of :func:`paired_rows` (the last column lists the seeds whose ends differ)."""
    lines = [f"| algorithm − {reference} | seeds in both | identical | higher | lower | "
             "mean difference ± SE | where they differ (seed: difference) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        where = ", ".join(f"{x}: {d:+,.0f}" for x, d in zip(r["seeds"], r["differences"])
                          if d != 0) or "nowhere"
        lines.append(f"| {r['algorithm']} | {len(r['seeds'])} | {r['identical']} | "
                     f"{r['higher']} | {r['lower']} | {r['mean']:+,.1f} ± {r['se']:,.1f} | "
                     f"{where} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m experiments.learning_report merge IN.json [IN.json ...] --out OUT.json
    [--pool]``: writes the merged document with its table and plots (:func:`write_outputs`;
    ``--pool``: runs of one algorithm on disjoint seeds become one entry).
    ``python -m experiments.learning_report summary IN.json [...] --task T [--threshold R]``:
    prints every algorithm's end point over seeds (:func:`summary_table`), pooled over disjoint
    seeds where an algorithm was run more than once, with how many ``--set-size`` seed sets meet
    the target (:func:`target_sets`); ``--paired-with ALGO`` adds every other algorithm's
    per-seed differences from ALGO on the seeds both ran (:func:`paired_table`),
    ``--compare-with ALGO`` every other algorithm's mean against ALGO's, unpaired
    (:func:`compared_table`); ``--out`` also writes it."""
    import json
    import sys

    p = ArgumentParser(prog="python -m experiments.learning_report")
    p.add_argument("command", choices=["merge", "summary"])
    p.add_argument("inputs", nargs="+", help="learning-curves JSON files")
    p.add_argument("--out", default=None, help="merge: the merged JSON (its .md and .png go "
                   "next to it; required); summary: a markdown file (optional)")
    p.add_argument("--task", default="halfcheetah", help="summary: the task (default halfcheetah)")
    p.add_argument("--threshold", type=float, default=1500.0,
                   help="summary: count the seeds ending at or above this return (default 1500)")
    p.add_argument("--set-size", type=int, default=5,
                   help="summary: the last column counts the sets of this many seeds ... "
                        "(default 5)")
    p.add_argument("--need", type=int, default=4,
                   help="summary: ... with at least this many at or above --threshold and every "
                        "seed's second return above its first (default 4: issue 11's target)")
    p.add_argument("--paired-with", default=None, metavar="ALGO",
                   help="summary: also each other algorithm's per-seed difference from ALGO's "
                        "final return on the seeds both ran")
    p.add_argument("--pool", action="store_true",
                   help="merge: an algorithm found in several files on disjoint seeds becomes "
                        "one entry over all its seeds (same samples and config) instead of the "
                        "last file's")
    p.add_argument("--compare-with", default=None, metavar="ALGO",
                   help="summary: also each other algorithm's mean final return against ALGO's, "
                        "unpaired (each over its own seeds; Welch standard error, and the "
                        "Mann-Whitney probability of ending above and p-value)")
    args = p.parse_args(argv)
    if not 1 <= args.need <= args.set_size:
        print(f"learning_report: error: --need {args.need} --set-size {args.set_size}: "
              "expected 1 <= need <= set-size", file=sys.stderr)
        return 2
    if args.command == "merge" and not args.out:
        print("learning_report: error: merge needs --out OUT.json", file=sys.stderr)
        return 2
    try:
        docs = [json.loads(pathlib.Path(f).read_text()) for f in args.inputs]
        if args.command == "summary":
            rows = summary_rows(docs, args.task, args.threshold, args.set_size, args.need)
            text = summary_table(rows, args.threshold, args.set_size, args.need)
            if args.paired_with:
                text += "\n\n" + paired_table(paired_rows(rows, args.paired_with),
                                               args.paired_with)
            if args.compare_with:
                text += "\n\n" + compared_table(compared_rows(rows, args.compare_with),
                                                 args.compare_with)
            print(text)
            if args.out:
                pathlib.Path(args.out).write_text(text + "\n")
            return 0
        paths = write_outputs(merge(docs, pool=args.pool), pathlib.Path(args.out))
    except (OSError, ValueError) as e:
        print(f"learning_report: error: {e}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
