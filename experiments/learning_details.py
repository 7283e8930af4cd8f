"""What happened inside BREMEN sweeps, deployment by deployment, over seeds (issue 11, item 3).

``python -m experiments.learning_details SWEEP_DIR [SWEEP_DIR ...] [--out FILE.md]``

For each sweep work directory (``bremen sweep`` or the learning-curves harness, e.g.
``runs/learning-quick/halfcheetah``) it reads ``metrics_outer0.npz`` (for a sweep run with
``--checkpoint-every`` that has not finished: ``metrics_outer0.partial.npz``, the deployments done
so far, and says so in the table's title) and prints, per deployment,
mean ± std over the runs of: the BC-initialised policy's return, the return after the last TRPO
chunk, TRPO's imagined return (last iteration), the model gap (the evaluation's episodes played
in the model minus the real return, ``eval/model_gap``; absent for older runs), the median
surrogate improvement TRPO's line search accepted (``trpo/improvement``; the likelihood ratios'
scale), the mean accepted step fraction (``trpo/ls_frac``, 1 = the full natural step), the
real return lost within the deployment (its best chunk's evaluation minus its last: a policy that
peaks and then collapses on the model) and the median KL from the target policy to the clone it
started from at the deployment's last iteration (``kl_to_behavior``: how far TRPO walked from the
data), the same KL as TRPO scores it (``kl_to_behavior_scored``: under the sampling distribution with
``trpo.ratio_std = "sampling"``; the quantity ``trpo.kl_budget`` bounds), the share of the
deployment's TRPO iterations skipped because that KL was over the budget (``trpo/over_kl_budget``;
0 without a budget) and the median iteration (1-based, over the runs that reached it) at which the
budget was first exceeded, for runs with ``trpo.kl_budget_states`` ``latest`` / ``max`` the
median KL to the clone on the latest real batch's states (``kl_to_behavior_latest``) at the last
iteration, and, for runs with ``trpo.validation = "members"``, the share of chunks rolled back. Columns whose metric an older run lacks show "–".

``--pool`` adds one table over the runs of all the sweeps given (same number of deployments):
per deployment the clone's return, the return after TRPO, in how many runs TRPO ended above its
clone, TRPO − clone and the clone − the policy deployed before it (mean ± standard error): where
a configuration gains and where it loses, over seeds run in separate sweeps.

``--against BASE_SWEEP`` adds, per sweep, a paired table: each seed against the same seed in
BASE_SWEEP (where the two runs first log different numbers, the KLs and budget flags there, the
returns of both after each deployment; :func:`divergence_table`).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors
from bremen_jax.sweep.report import partial_metrics_path


def _ms(x: np.ndarray) -> str:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return "–"
    std = x.std(ddof=1) if x.size > 1 else 0.0
    return f"{x.mean():.1f} ± {std:.1f}"


def _median_sci(x: np.ndarray) -> str:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return f"{np.median(x):.2g}" if x.size else "–"


def metrics_file(sweep_dir: pathlib.Path) -> tuple[pathlib.Path, bool]:
    """``(path, unfinished)``: the sweep's ``metrics_outer0.npz`` or, for a checkpointed sweep
    that has not finished (``--checkpoint-every``), ``metrics_outer0.partial.npz`` with the
    deployments done so far."""
    path = sweep_dir / "metrics_outer0.npz"
    if path.is_file():
        return path, False
    partial = partial_metrics_path(sweep_dir, 0)
    if partial.is_file():
        return partial, True
    raise FileNotFoundError(f"{sweep_dir} holds no sweep metrics (no metrics_outer0.npz, nor "
                            f"{partial.name} from a sweep run with --checkpoint-every); expected "
                            f"a sweep work directory")


def load(sweep_dir: pathlib.Path) -> dict[str, np.ndarray]:
    """Every metric of the sweep's first outer value, ``{"group|name": [R, K, ...]}`` (K: the
    deployments done, for an unfinished sweep)."""
    with np.load(metrics_file(sweep_dir)[0]) as f:
        return {k: f[k] for k in f.files}


def deployment_table(m: dict[str, np.ndarray]) -> list[dict[str, str]]:
    """One row per deployment; each cell mean ± std over the runs (or a median where named)."""
    ev = m["eval|eval/return_mean"]                              # [R, K, C]
    gap = m.get("eval|eval/model_gap")                           # [R, K, C]; None: older runs
    imagined = m.get("improve|imagined_return")                  # [R, K, C, chunk]
    kl = m.get("improve|kl_to_behavior")                         # [R, K, C, chunk]
    rolled = m.get("improve|validation/rolled_back")             # [R, K, C, chunk]; or None
    kl_scored = m.get("improve|kl_to_behavior_scored")           # [R, K, C, chunk]; or None
    over = m.get("improve|trpo/over_kl_budget")                  # [R, K, C, chunk]; or None
    kl_latest = m.get("improve|kl_to_behavior_latest")           # [R, K, C, chunk]; or None
    rows = []
    for k in range(ev.shape[1]):
        rows.append({
            "deployment": str(k + 1),
            "BC init": _ms(m["preamble|bc_eval/return_mean"][:, k]),
            "after TRPO": _ms(ev[:, k, -1]),
            "imagined (last it.)": "–" if imagined is None else _ms(imagined[:, k, -1, -1]),
            "model gap": "–" if gap is None else _ms(gap[:, k, -1]),
            "median improvement": _median_sci(m["improve|trpo/improvement"][:, k]),
            "mean step fraction": _ms_frac(m.get("improve|trpo/ls_frac"), k),
            "best chunk − last": _ms(ev[:, k].max(axis=-1) - ev[:, k, -1]),
            "KL to clone (last it.)": ("–" if kl is None else
                                       _median_sci(kl[:, k, -1, -1])),
            "KL scored (last it.)": ("–" if kl_scored is None else
                                     _median_sci(kl_scored[:, k, -1, -1])),
            "over KL budget": "–" if over is None else f"{(over[:, k] > 0).mean():.2f}",
            "first over budget (it.)": _first_over(over, k),
        })
        if kl_latest is not None:  # trpo.kl_budget_states latest / max: on the real batch
            rows[-1]["KL latest (last it.)"] = _median_sci(kl_latest[:, k, -1, -1])
        if rolled is not None:  # trpo.validation = "members": share of chunks rolled back
            rows[-1]["chunks rolled back"] = f"{rolled[:, k, :, -1].mean():.2f}"
    return rows


def _mse(x: np.ndarray) -> str:
    """``+mean ± standard error`` (``ddof=1``), whole numbers."""
    x = np.asarray(x, np.float64)
    se = x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else 0.0
    return f"{x.mean():+.0f} ± {se:.0f}"


def clone_table(ms: list[dict[str, np.ndarray]]) -> list[dict[str, str]]:
    """Per deployment over the runs of all ``ms`` pooled: the clone (``bc_eval``) against the
    policy after TRPO (the last chunk's evaluation) and against the policy deployed before it."""
    ks = {m["eval|eval/return_mean"].shape[1] for m in ms}
    if len(ks) != 1:
        raise ValueError(f"--pool needs sweeps with one number of deployments, got {sorted(ks)}")
    after = np.concatenate([m["eval|eval/return_mean"][:, :, -1] for m in ms])      # [R, K]
    clone = np.concatenate([m["preamble|bc_eval/return_mean"] for m in ms])        # [R, K]
    rows = []
    for k in range(after.shape[1]):
        diff = after[:, k] - clone[:, k]
        rows.append({"deployment": str(k + 1), "clone": f"{clone[:, k].mean():.1f}",
                     "after TRPO": f"{after[:, k].mean():.1f}",
                     "TRPO above the clone": f"{int((diff > 0).sum())}/{diff.size}",
                     "TRPO − clone (± SE)": _mse(diff),
                     "clone − deployed before (± SE)": (
                         "–" if k == 0 else _mse(clone[:, k] - after[:, k - 1]))})
    return rows


def _iters(m: dict, key: str, d: int) -> np.ndarray:
    """``[R, C * I]``: deployment ``d``'s per-iteration metric ``key``, chunks laid end to end."""
    return np.asarray(m[key][:, d]).reshape(m[key].shape[0], -1)


def _where_differ(m: dict, b: dict, i: int, j: int):
    """The first point, in run order, where run ``i`` of ``m`` and run ``j`` of ``b`` log
    different numbers: ``(deployment, iteration)`` (0-based; iteration ``None`` = the deployment's
    preamble) or ``None``. Per deployment the order is the preamble, then per chunk its TRPO
    iterations, then its evaluation; only metrics both logged are compared, exactly."""
    keys = sorted(k for k in set(m) & set(b) if "|" in k)
    pre, improve, ev = ([k for k in keys if k.startswith(p)]
                        for p in ("preamble|", "improve|", "eval|"))
    K, C = m["eval|eval/return_mean"].shape[1:3]
    n_it = m[improve[0]].shape[-1] if improve else 0          # iterations per chunk
    for d in range(K):
        if any(not np.array_equal(m[k][i, d], b[k][j, d]) for k in pre):
            return d, None
        for c in range(C):
            if improve:
                diff = np.stack([m[k][i, d, c] != b[k][j, d, c] for k in improve]).any(axis=0)
                if diff.any():
                    return d, c * n_it + int(np.argmax(diff))
            if any(not np.array_equal(m[k][i, d, c], b[k][j, d, c]) for k in ev):
                return d, (c + 1) * n_it - 1 if improve else None
    return None


def divergence_table(m: dict[str, np.ndarray], base: dict[str, np.ndarray]
                     ) -> list[dict[str, str]]:
    """Paired runs: per seed both sweeps ran (``seeds`` in each npz), where the two first log
    different numbers (:func:`_where_differ`: "D5 it. 43" = deployment 5, its 43rd TRPO
    iteration counted over its chunks; "D2 preamble"; "identical"), the scored KL to the clone on
    the imagined batch and, where logged, on the latest real batch at that iteration (this sweep's),
    whether each sweep's KL budget skipped that iteration, the return after each deployment in
    both (this / base) and the difference after the last deployment (of an unfinished sweep:
    the last one done, against the base's same deployment). For an option that changes nothing
    until a check binds (``trpo.kl_budget_states``), the first difference is where it bound
    first."""
    if "seeds" not in m or "seeds" not in base:
        raise ValueError("--against needs sweeps that log their seeds (metrics 'seeds')")
    where_b = {int(x): j for j, x in enumerate(base["seeds"])}
    shared = [(int(x), i, where_b[int(x)]) for i, x in enumerate(m["seeds"]) if int(x) in where_b]
    if not shared:
        raise ValueError(f"--against: no seed in both sweeps ({sorted(map(int, m['seeds']))} "
                         f"and {sorted(where_b)})")
    K, K_base = m["eval|eval/return_mean"].shape[1], base["eval|eval/return_mean"].shape[1]
    if K < K_base:  # an unfinished sweep: against the base's same first deployments
        base = {k: v[:, :K] if "|" in k else v for k, v in base.items()}
    if m["eval|eval/return_mean"].shape[1:] != base["eval|eval/return_mean"].shape[1:]:
        raise ValueError("--against needs sweeps with the same deployments and chunks (or a "
                         "sweep with fewer deployments done, against the base's first ones)")
    rows = []
    for seed, i, j in shared:
        ev, ev_b = m["eval|eval/return_mean"][i, :, -1], base["eval|eval/return_mean"][j, :, -1]
        at = _where_differ(m, base, i, j)
        kl = lat = over = "–"
        if at is None:
            where = "identical"
        elif at[1] is None:
            where = f"D{at[0] + 1} preamble"
        else:
            d, it = at
            where = f"D{d + 1} it. {it + 1}"
            if "improve|kl_to_behavior_scored" in m:
                kl = f"{_iters(m, 'improve|kl_to_behavior_scored', d)[i, it]:.1f}"
            if "improve|kl_to_behavior_latest" in m:
                lat = f"{_iters(m, 'improve|kl_to_behavior_latest', d)[i, it]:.1f}"
            key = "improve|trpo/over_kl_budget"
            if key in m and key in base:
                over = f"{int(_iters(m, key, d)[i, it])} / {int(_iters(base, key, d)[j, it])}"
        rows.append({"seed": str(seed), "first difference": where, "KL imagined": kl,
                     "KL latest": lat, "over budget (this / base)": over,
                     "after each deployment": ", ".join(f"{x:.0f}" for x in ev),
                     "base": ", ".join(f"{x:.0f}" for x in ev_b),
                     "last − base": f"{ev[-1] - ev_b[-1]:+.0f}"})
    return rows


def _first_over(over, k: int) -> str:
    """Median (over the runs that exceeded it) 1-based iteration at which deployment ``k``'s
    KL first went over the budget, with how many runs did; "never" if none, "–" if not logged."""
    if over is None:
        return "–"
    flat = np.asarray(over[:, k]).reshape(over.shape[0], -1) > 0     # [R, C * chunk]
    hit = flat.any(axis=1)
    if not hit.any():
        return "never"
    first = flat.argmax(axis=1)[hit] + 1
    return f"{np.median(first):g} ({hit.sum()}/{flat.shape[0]} runs)"


def _ms_frac(frac, k: int) -> str:
    if frac is None:
        return "–"
    x = np.asarray(frac[:, k], np.float64)
    return f"{x.mean():.3f}"


def markdown(name: str, rows: list[dict[str, str]], runs: int) -> str:
    cols = list(rows[0])
    lines = [f"**{name}** ({runs} runs)", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m experiments.learning_details",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("sweeps", nargs="+", help="sweep work directories")
    p.add_argument("--out", default=None, help="also write the tables to this markdown file")
    p.add_argument("--pool", action="store_true", help="also one table over the runs of all "
                   "the sweeps: TRPO against the clone, per deployment")
    p.add_argument("--against", default=None, metavar="BASE_SWEEP",
                   help="also, per sweep, each seed paired with the same seed in BASE_SWEEP: where "
                        "the two first differ and their returns")
    args = p.parse_args(argv)
    parts, ms = [], []
    try:
        for d in map(pathlib.Path, args.sweeps):
            m = load(d)
            ms.append(m)
            name = d.name
            if metrics_file(d)[1]:
                name += (f" (unfinished: deployments 1-{m['eval|eval/return_mean'].shape[1]} "
                         f"so far)")
            parts.append(markdown(name, deployment_table(m),
                                  m["eval|eval/return_mean"].shape[0]))
        if args.against:
            base = load(pathlib.Path(args.against))
            for d, m in zip(args.sweeps, ms):
                rows = divergence_table(m, base)
                parts.append(markdown(f"{pathlib.Path(d).name} against {args.against}", rows,
                                      len(rows)))
        if args.pool:
            parts.append(markdown("pooled: TRPO against the clone", clone_table(ms),
                                  sum(m["eval|eval/return_mean"].shape[0] for m in ms)))
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"learning_details: error: {e}", file=sys.stderr)
        return 2
    text = "\n".join(parts)
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
