"""What a run shows on the console (rich): compile status, progress, the summary table."""

from __future__ import annotations

import contextlib
from typing import Any


def fmt(x) -> str:
    """A return for display (None -> "-"; the logs' "nan"/"inf" strings too)."""
    return "-" if x is None else f"{float(x):.2f}"


def progress(console):
    """A rich progress display (spinner, description, bar, n/m, elapsed time)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console)


@contextlib.contextmanager
def compiling(console, what: str):
    """A live "compiling <what> ... <elapsed>" line while the body runs (nothing if no console)."""
    if console is None:
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("compiling {task.description}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        bar.add_task(what, total=None)
        yield


def print_summary(summary: dict[str, Any], console) -> None:
    """A rich table of the summary (one row per deployment, then timings)."""
    from rich.table import Table

    t = Table(title=f"BREMEN {summary['task']} ({summary['driver']} driver)")
    for col in ("deployment", "real steps", "BC-init return", "return"):
        t.add_column(col, justify="right")
    for r in summary["per_deployment"]:
        t.add_row(str(r["deployment"]), str(r["env_steps"]), fmt(r["bc_return"]),
                  fmt(r["return"]))
    console.print(t)
    console.print(f"random policy return {fmt(summary['random_policy_return'])}; "
                  f"deployments {summary['deployments']}/{summary['num_deployments']}; "
                  f"real steps {summary['env_steps']}")
    wall = ", ".join(f"{k} {v:.1f}s" for k, v in summary["wall_time_s"].items())
    comp = ", ".join(f"{k} {v:.1f}s" for k, v in summary["compile_time_s"].items())
    console.print(f"wall time: {wall}\ncompile time: {comp}")
