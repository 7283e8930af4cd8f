"""Where the test suite's compile time goes: ``python -m benchmarks.suite_compiles FILE [--top N]``.

Run the suite with ``BREMEN_TEST_COMPILE_LOG=FILE`` (tests/conftest.py appends every XLA compile,
its program name, seconds and the test that caused it, to ``FILE.<pid>``, one file per pytest-xdist
worker), then this prints, per program name, how many times it was compiled, the seconds in all
and the test files that compiled it, and the tests that compiled the most. A program compiled by
many tests in different shapes or XLA options is where sharing a configuration saves time.
Subprocesses a test starts are not recorded.
"""

from __future__ import annotations

import collections
import glob
import json
import sys

from bremen_jax.cli.common import ArgumentParser  # one-line usage errors


def load(prefix: str) -> list[dict]:
    """The records of every ``prefix.<pid>`` file (and ``prefix`` itself, if it exists)."""
    rows = []
    for path in sorted(set(glob.glob(prefix + ".*") + glob.glob(prefix))):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def report(rows: list[dict], top: int = 15) -> str:
    by_program = collections.defaultdict(list)
    by_test = collections.Counter()
    for r in rows:
        by_program[r["program"]].append(r)
        by_test[r["test"]] += r["seconds"]
    total = sum(r["seconds"] for r in rows)
    out = [f"{len(rows)} compiles, {total:.1f} s in all", "",
           "| program | compiles | seconds | test files (compiles) |", "|---|---:|---:|---|"]
    ranked = sorted(by_program.items(), key=lambda kv: -sum(r["seconds"] for r in kv[1]))
    for name, rs in ranked[:top]:
        files = collections.Counter(str(r["test"]).split("::")[0] for r in rs)
        where = ", ".join(f"{f} ({n})" for f, n in files.most_common(4))
        out.append(f"| {name} | {len(rs)} | {sum(r['seconds'] for r in rs):.1f} | {where} |")
    out += ["", "| test | compile seconds |", "|---|---:|"]
    out += [f"| {t} | {s:.1f} |" for t, s in by_test.most_common(top)]
    return "\n".join(out)


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m benchmarks.suite_compiles",
                       description=__doc__.splitlines()[0])
    p.add_argument("prefix", help="the BREMEN_TEST_COMPILE_LOG value the suite ran with")
    p.add_argument("--top", type=int, default=15, help="rows per table")
    args = p.parse_args(argv)
    rows = load(args.prefix)
    if not rows:
        print(f"no compile records at {args.prefix}.*; run the suite with "
              f"BREMEN_TEST_COMPILE_LOG={args.prefix}", file=sys.stderr)
        return 2
    print(report(rows, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
