"""Host-side metric writers: CSV, JSONL and TensorBoard in a work directory.

Compiled phases return metrics as pytrees of device arrays; the drivers ``jax.device_get`` them once
per call and hand them here. Nothing in this module runs inside ``jit``.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
from typing import Any, Iterable, Mapping

import numpy as np

NONFINITE = ("nan", "inf", "-inf")  # how a non-finite float is written (never a silent null)
# Bookkeeping counters: TensorBoard's step (or the position in the run), never scalars there.
COUNTERS = frozenset({"step", "deployment", "chunk", "iteration"})


def _visible(x: Any) -> Any:
    """A non-finite float -> ``"nan"`` / ``"inf"`` / ``"-inf"`` (``float()`` reads them back);
    lists element by element; anything else as it is."""
    if isinstance(x, list):
        return [_visible(e) for e in x]
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def to_python(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Device/NumPy scalars -> Python floats/ints; arrays -> lists (for JSON). Non-finite floats
    become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (valid JSON, and visible in the files)."""
    return {k: _visible(np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v).tolist())
            for k, v in metrics.items()}


def _is_scalar(v: Any) -> bool:
    """A CSV/TensorBoard scalar: a number, None, or a non-finite float written as a string."""
    return isinstance(v, (int, float)) or v is None or (isinstance(v, str) and v in NONFINITE)


class MetricWriter:
    """Appends rows to ``<workdir>/<stream>.jsonl`` and ``<stream>.csv`` and TensorBoard scalars.

    A CSV's columns are those of its rows so far: a row with a new key rewrites the file once with
    the wider header (earlier rows get empty cells there). Existing files are appended to, so a
    resumed run keeps its history. TensorBoard (``<workdir>/tb``) gets a row's finite numbers as
    ``<stream>/<key>`` at the row's step, except the :data:`COUNTERS`; :meth:`write_series` adds
    per-iteration arrays (every TRPO iteration, not only a chunk's last).
    """

    def __init__(self, workdir: str | pathlib.Path, tensorboard: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
                self._tb = SummaryWriter(str(self.workdir / "tb"))
            except ImportError:  # pragma: no cover - tensorboardX is a dependency
                self._tb = None

    def write(self, stream: str, step: int, metrics: Mapping[str, Any], *,
              tb_skip: Iterable[str] = ()) -> dict[str, Any]:
        """Appends ``{"step": step, **metrics}`` to the stream's JSONL and CSV (scalars); keys in
        ``tb_skip`` are left out of TensorBoard (e.g. those :meth:`write_series` logs)."""
        row = {"step": int(step), **to_python(metrics)}
        with open(self.workdir / f"{stream}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        scalars = {k: v for k, v in row.items() if _is_scalar(v)}
        path = self.workdir / f"{stream}.csv"
        if stream not in self._columns:
            if path.exists() and path.stat().st_size > 0:
                with open(path, encoding="utf-8") as f:
                    self._columns[stream] = next(csv.reader(f))
            else:
                self._columns[stream] = list(scalars)
                with open(path, "w", newline="", encoding="utf-8") as f:
                    csv.writer(f).writerow(self._columns[stream])
        new = [k for k in scalars if k not in self._columns[stream]]
        if new:
            self._widen(path, stream, new)
        with open(path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([scalars.get(c, "") for c in self._columns[stream]])
        if self._tb is not None:
            skip = COUNTERS | set(tb_skip)
            for k, v in scalars.items():
                if k not in skip and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(f"{stream}/{k}", v, int(step))
        return row

    def write_series(self, prefix: str, last_step: int, metrics: Mapping[str, Any]) -> None:
        """TensorBoard only: entry ``i`` of each ``[n]`` metric as ``<prefix>/<key>`` at step
        ``last_step - n + 1 + i`` (e.g. a chunk's TRPO iterations, ending at the global iteration
        ``last_step``). Non-finite entries and other shapes are left out."""
        if self._tb is None:
            return
        for k, v in metrics.items():
            a = np.asarray(v)
            if a.ndim != 1 or k in COUNTERS:
                continue
            for i, x in enumerate(a.astype(np.float64).tolist()):
                if math.isfinite(x):
                    self._tb.add_scalar(f"{prefix}/{k}", x, int(last_step) - a.size + 1 + i)

    def _widen(self, path: pathlib.Path, stream: str, new: list[str]) -> None:
        """Rewrites ``path`` (atomically) with ``new`` columns appended to its header."""
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
        self._columns[stream] = self._columns[stream] + new
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(self._columns[stream])
            w.writerows(r + [""] * len(new) for r in rows)
        tmp.replace(path)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_jsonl(path: str | pathlib.Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
