"""Trains the shipped behaviour policies (random / medium / expert) with Brax PPO (issue 6).

Usage::

    python -m experiments.train_behavior --task halfcheetah --num-timesteps 1000000
    python -m experiments.train_behavior --task hopper --num-timesteps 800000 \\
        --ppo learning_rate=1e-3 --ppo num_envs=128

Writes ``bremen_jax/datasets/behaviors/<task>/`` (snapshots, medium.npz, expert.npz, manifest.json)
and updates ``bremen_jax/datasets/behaviors/references.json`` unless ``--out-dir`` is given; prints
the report of :func:`bremen_jax.datasets.behavior_training.train_behavior` as one JSON line.
Defaults: :data:`~bremen_jax.datasets.behavior_training.PPO_SETTINGS` and
:data:`~bremen_jax.datasets.behavior_policies.TASK_BACKENDS`.
"""

from __future__ import annotations

import argparse
import json
import sys

from bremen_jax.datasets import behavior_policies as bp
from bremen_jax.datasets import behavior_training
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors


def _parse_value(text: str):
    """``3e-4`` -> float, ``[32,32]`` -> list, ``true`` -> bool; anything else stays a str."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_ppo_overrides(items: list[str]) -> dict:
    """``["learning_rate=1e-3", "policy_hidden_layer_sizes=[64,64]"]`` -> kwargs.

    Raises:
        ValueError: an item without ``=``.
    """
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--ppo expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        value = _parse_value(value)
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, action="append",
                        help="task name (repeat for several; trained one after the other)")
    parser.add_argument("--num-timesteps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None,
                        help=f"artefact directory (default {bp.DEFAULT_DIRECTORY})")
    parser.add_argument("--backend", default=None, help="default: TASK_BACKENDS[task]")
    parser.add_argument("--num-snapshots", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--ppo", action="append", default=[], metavar="KEY=VALUE",
                        help="override a ppo.train argument or a network size")
    args = parser.parse_args(argv)
    overrides = parse_ppo_overrides(args.ppo)
    for task in args.task:
        try:
            report = _train(task, args, overrides)
        except (RuntimeError, ValueError) as e:
            print(f"train_behavior: error: {e}", file=sys.stderr)
            return 2
        print("REPORT " + json.dumps(report), flush=True)
    return 0


def _train(task: str, args: argparse.Namespace, overrides: dict) -> dict:
    return behavior_training.train_behavior(
        task, num_timesteps=args.num_timesteps, seed=args.seed, out_dir=args.out_dir,
        backend=args.backend, num_snapshots=args.num_snapshots, eval_episodes=args.eval_episodes,
        log=lambda msg: print(msg, flush=True), **overrides)


if __name__ == "__main__":
    sys.exit(main())
