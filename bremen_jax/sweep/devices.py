"""Devices for sweeps: the distributed runtime, the ``("runs",)`` mesh, padding runs to the device
count, global arrays and gathering them, and the memory each device has free.

Host-side helpers of :mod:`bremen_jax.sweep.program`; nothing here compiles the sweep.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from bremen_jax.algo.phases import Phases
from bremen_jax.sweep import report

__all__ = ["SweepMemoryError", "available_memory_bytes", "check_memory", "gather", "global_array",
           "initialize_distributed", "local_runs", "make_runs_mesh", "pad_runs", "padded_size",
           "run_state_bytes", "tree_nbytes", "wait_for_all_processes"]


class SweepMemoryError(MemoryError, ValueError):
    """The sweep will not fit in device memory (raised before compiling or running it)."""


# ------------------------------------------------------------------------ devices and sharding
def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           local_device_ids: Sequence[int] | None = None) -> tuple[int, int]:
    """``jax.distributed.initialize`` for multi-host sweeps (call before any other JAX use).

    Arguments left ``None`` come from ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0),
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` and ``JAX_LOCAL_DEVICE_IDS`` when set, else from
    JAX's cluster auto-detection (Cloud TPU pod slices, SLURM, Open MPI, Kubernetes). Every
    process then runs the same :func:`run_sweep`; the mesh spans ``jax.devices()`` (all hosts)
    and only process 0 writes files. Returns ``(process_index, process_count)``.
    """
    if not jax.distributed.is_initialized():
        env = os.environ
        if num_processes is None and env.get("JAX_NUM_PROCESSES"):
            num_processes = int(env["JAX_NUM_PROCESSES"])
        if process_id is None and env.get("JAX_PROCESS_ID"):
            process_id = int(env["JAX_PROCESS_ID"])
        kwargs = {k: v for k, v in dict(coordinator_address=coordinator_address,
                                        num_processes=num_processes, process_id=process_id,
                                        local_device_ids=local_device_ids).items()
                  if v is not None}
        jax.distributed.initialize(**kwargs)
    return jax.process_index(), jax.process_count()


def wait_for_all_processes(name: str, timeout_s: float = 3600.0) -> None:
    """A barrier of the distributed runtime's coordination service (no device collective).

    Each process compiles (or loads from its cache) the sweep program at its own pace; the program's
    first collective must then start in every process within gloo's 30 s, so the processes
    meet here first. Nothing to do in a one-process run.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed

    client = distributed.global_state.client
    if client is not None:
        client.wait_at_barrier(name, int(timeout_s * 1000))


def make_runs_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh ``("runs",)`` over ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: expected at least one device")
    return Mesh(np.asarray(devices), ("runs",))


def padded_size(num_runs: int, num_devices: int) -> int:
    """The smallest multiple of ``num_devices`` >= ``num_runs``."""
    if num_runs <= 0 or num_devices <= 0:
        raise ValueError(f"num_runs and num_devices must be > 0, got {num_runs}, {num_devices}")
    return -(-num_runs // num_devices) * num_devices


def pad_runs(tree: Any, size: int) -> Any:
    """Pads every ``[R, ...]`` NumPy leaf to ``[size, ...]`` by repeating the last run."""
    def pad(x):
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], size - x.shape[0], axis=0)])
    return jax.tree.map(pad, tree)


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global ``[R_pad, ...]`` array sharded over runs; each process fills its own shards."""
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def local_runs(tree: Any, num_runs: int) -> list[int]:
    """The real runs (padding excluded) whose results this process's devices computed."""
    leaf = jax.tree.leaves(tree)[0]
    rows = {i for s in leaf.addressable_shards for i in range(*s.index[0].indices(leaf.shape[0]))}
    return sorted(i for i in rows if i < num_runs)


def gather(tree: Any) -> Any:
    """Device results -> NumPy on every process (``process_allgather`` across hosts)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, jax.device_get(tree))


# ------------------------------------------------------------------------ memory
def tree_nbytes(tree: Any) -> int:
    """Bytes of a pytree of arrays or ``ShapeDtypeStruct``s (typed keys: their key data)."""
    return int(sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def run_state_bytes(phases: Phases) -> int:
    """Bytes of one run's ``RunState`` (buffer, ensemble + Adam, policies), no compile."""
    return tree_nbytes(jax.eval_shape(phases.init, jax.eval_shape(jax.random.key, 0)))


def available_memory_bytes(devices: Sequence[jax.Device]) -> tuple[int | None, str]:
    """Free memory per device and where the number comes from; ``None`` when unknown.

    GPU/TPU: the smallest ``bytes_limit - bytes_in_use`` of ``device.memory_stats()``. CPU: the
    host's ``MemAvailable`` (``/proc/meminfo``) divided by the local devices (they share it).
    """
    local = [d for d in devices if d.process_index == jax.process_index()] or list(devices)
    if local[0].platform == "cpu":
        try:
            for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    kib = int(line.split()[1])
                    return kib * 1024 // len(local), f"MemAvailable / {len(local)} cpu device(s)"
        except OSError:
            pass
        return None, "unknown (no /proc/meminfo)"
    free = []
    for d in local:
        stats = d.memory_stats() or {}
        if "bytes_limit" in stats:
            free.append(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    if not free:
        return None, "unknown (device reports no memory_stats)"
    return min(free), f"{local[0].platform} memory_stats bytes_limit - bytes_in_use"


def check_memory(need: int, devices: Sequence[jax.Device], what: str, runs_per_device: int) -> dict:
    """Raises :class:`SweepMemoryError` when ``need`` bytes per device exceed the free memory."""
    avail, source = available_memory_bytes(devices)
    if avail is not None and need > avail:
        raise SweepMemoryError(
            f"the sweep needs about {report.fmt_bytes(need)} per device ({what}) but "
            f"{report.fmt_bytes(avail)} is free ({source}); use fewer runs per device (now "
            f"{runs_per_device}: fewer seeds or points, or split the sweep with 'outer') or "
            f"more devices")
    return {"need_bytes": int(need), "available_bytes": avail, "source": source}
