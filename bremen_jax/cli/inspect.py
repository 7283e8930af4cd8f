"""``bremen evaluate`` and ``bremen render``: look at a run's policies (:mod:`bremen_jax.run.evaluate`,
:mod:`bremen_jax.run.render`), and :func:`evaluate`, the Python entry point with normalised scores.

Paths are checked here, before jax, Brax or a checkpoint is loaded.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any, Callable

from bremen_jax.cli.common import CliError, add_command, fmt
from bremen_jax.run.files import render_output, writable_file  # no JAX


def _run_dir(path: str) -> pathlib.Path:
    p = pathlib.Path(path)
    if not (p / "config.json").is_file():
        raise CliError(f"{p} is not a bremen run directory (no config.json); expected the "
                       f"--workdir of `bremen train` or `bremen offline`")
    return p


def _output(check: Callable[..., pathlib.Path], *args) -> pathlib.Path:
    """An output path checked by ``check`` (:mod:`bremen_jax.run.files`), as a one-line CLI
    error."""
    try:
        return check(*args)
    except ValueError as e:
        raise CliError(str(e)) from None


def evaluate(run_dir: str | pathlib.Path, *, episodes: int = 10, stochastic: bool = False,
             seed: int = 0, deployment: int | None = None,
             out: str | pathlib.Path | None = None) -> dict[str, Any]:
    """Evaluates a run's target and BC policies on real episodes (``bremen_jax.evaluate``).

    :func:`bremen_jax.run.evaluate.evaluate_run` with the normalised scores of
    :func:`bremen_jax.datasets.scores.scores_or_none` (None for tasks without reference returns);
    ``out``: also write the result there as JSON (atomically). Returns the result dict.
    """
    from bremen_jax.datasets.scores import scores_or_none
    from bremen_jax.run.evaluate import evaluate_run, write_json

    result = evaluate_run(run_dir, episodes=episodes, stochastic=stochastic, seed=seed,
                          deployment=deployment, score_fn=scores_or_none)
    if out is not None:
        write_json(result, out)
    return result


def print_evaluation(r: dict) -> None:
    ck = r["checkpoint"]
    print(f"{r['run_dir']} ({r['kind']}): {r['task']} ({r['backend']}), checkpoint step "
          f"{ck['step']} = deployment {ck['deployment']}, chunk {ck['chunk']}; "
          f"{r['episodes']} {r['mode']} episodes (seed {r['seed']})")
    for line in r["skipped_checkpoints"]:
        print(f"  skipped: {line}")
    print(f"  {'policy':<8} {'return mean':>12} {'± std':>9} {'length':>8} {'score':>7}")
    for name, p in r["policies"].items():
        print(f"  {name:<8} {p['return_mean']:>12.2f} {p['return_std']:>9.2f} "
              f"{p['length_mean']:>8.1f} {fmt(p['normalized_score']):>7}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    run_dir = _run_dir(args.run_dir)
    out = _output(writable_file, args.out or run_dir / "evaluation.json", (".json",))
    from bremen_jax.run.compile import enable_persistent_cache

    enable_persistent_cache()
    result = evaluate(run_dir, episodes=args.episodes, stochastic=args.stochastic,
                      seed=args.seed, deployment=args.deployment, out=out)
    print_evaluation(result)
    print(f"written: {out}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    out = _output(render_output, args.out)
    run_dir = _run_dir(args.run_dir)
    if out.suffix.lower() in (".gif", ".mp4") and "mujoco" not in sys.modules:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless, chosen when mujoco is imported
    from bremen_jax.run.compile import enable_persistent_cache
    from bremen_jax.run.render import render_run

    enable_persistent_cache()
    info = render_run(run_dir, out, deployment=args.deployment, policy=args.policy,
                      episodes=args.episodes, steps=args.steps, width=args.width,
                      height=args.height, every=args.every, seed=args.seed)
    ck = info["checkpoint"]
    print(f"{out}: {info['frames']} frames of the {info['policy']} policy (episodes of "
          f"{', '.join(map(str, info['frames_per_episode']))} frames), checkpoint step "
          f"{ck['step']} = deployment {ck['deployment']}, chunk {ck['chunk']}")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _shared(p: argparse.ArgumentParser, episodes: int) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a `bremen train` / `bremen offline` "
                                                      "work directory")
    p.add_argument("--deployment", type=_positive, default=None, metavar="K",
                   help="the checkpoint at the end of deployment K (default: the latest "
                        "checkpoint); only the latest checkpoint.max_to_keep are kept")
    p.add_argument("--episodes", type=_positive, default=episodes,
                   help="episodes per policy")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes' keys (default 0)")


def register(sub) -> None:
    p = add_command(sub, "evaluate", cmd_evaluate, overrides=False,
                    help="evaluate a run's target and BC policies on real episodes",
        description="Restore a run's checkpoint and run real episodes (up to the run's "
                    "episode length) of its target policy and of its behaviour clone, with the "
                    "same episode keys. Prints a table; writes per-episode returns, mean ± std, "
                    "lengths and normalised scores (tasks with reference returns) as JSON.")
    _shared(p, 10)
    p.add_argument("--stochastic", action="store_true",
                   help="sample actions from the policy's Gaussian (default: its mean action)")
    p.add_argument("--out", default=None, metavar="FILE.json",
                   help="where to write the JSON (default: RUN_DIR/evaluation.json; replaced)")
    p = add_command(sub, "render", cmd_render, overrides=False,
                    help="render a run's policy acting in its task (.html, .gif or .mp4)",
        description="Roll out the policy's mean action in the run's task and write FILE: .html "
                    "is Brax's interactive viewer (the page loads its viewer scripts from the "
                    "web, cdn.jsdelivr.net); .gif/.mp4 draw frames with MuJoCo's offscreen renderer "
                    "(headless: MUJOCO_GL=egl unless set; needs libEGL, see the README).")
    _shared(p, 1)
    p.add_argument("--out", required=True, metavar="FILE", help="output file: .html, .gif or .mp4 (.mp4 needs imageio-ffmpeg: "
                        "pip install -e '.[video]')")
    p.add_argument("--policy", choices=("target", "bc"), default="target",
                   help="the target policy or the behaviour clone (bc)")
    p.add_argument("--steps", type=_positive, default=None,
                   help="at most N steps per episode (default: the episode length, at most 1000)")
    p.add_argument("--width", type=_positive, default=320, help="GIF width in pixels")
    p.add_argument("--height", type=_positive, default=240, help="GIF height in pixels")
    p.add_argument("--every", type=_positive, default=1, metavar="K",
                   help="keep every K-th frame")
