"""Checkpoints of a whole run: an orbax ``CheckpointManager`` over ``<dir>/<step>/{state,meta}``.

Every orbax call of the project lives in this module (DESIGN §2). A checkpoint holds

* ``state``: the WHOLE run-state pytree (e.g. :class:`~bremen_jax.algo.phases.RunState`), with
  typed PRNG keys stored as their key data (``jax.random.key_data``) and re-wrapped on restore
  (``jax.random.wrap_key_data``, same key implementation);
* ``meta``: JSON with the caller's position in the schedule, the config, anything extra, a
  description of every leaf (path, shape, dtype) so that a checkpoint written by a different
  configuration is refused with a message naming the leaves (and config fields) that differ,
  before orbax reads any array, and SHA-256 checksums of the arrays and of the config: a restore
  whose arrays do not hash to what was saved is refused (:class:`DamagedCheckpointError`), never
  returned; :meth:`Checkpointer.restore_intact` then falls back to the newest intact checkpoint.

Saves are synchronous (:meth:`Checkpointer.save` returns after ``wait_until_finished``), so the
caller may donate or overwrite the saved arrays right after.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import shutil
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from bremen_jax.run.io_errors import orbax_errors_quiet, os_error

_ITEMS = ("state", "meta")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, corrupt, or does not fit the expected state."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files are unreadable or whose arrays fail their checksum."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (disk full, permission lost, read-only file system): its
    partial files were removed, earlier checkpoints are intact. ``errno``/``strerror`` say why
    (``errno`` None when the storage layer gave no code)."""


def tree_checksum(tree: Any) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes (typed keys as their key data)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(_keys_to_data(tree))):
        a = np.ascontiguousarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def config_checksum(config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _meta_checksum(meta: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint's JSON metadata as read back, but its own entry."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    body["checksum"] = {k: v for k, v in (meta.get("checksum") or {}).items() if k != "meta"}
    return config_checksum(body)


def is_prng_key(x: Any) -> bool:
    """True for typed PRNG key arrays (and their ``ShapeDtypeStruct``)."""
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_prng_key(x) else x, tree)


def leaf_specs(tree: Any) -> dict[str, str]:
    """``{path: "dtype[shape]"}`` for every leaf (arrays or ``ShapeDtypeStruct``s); typed keys
    appear as ``key<impl>[shape]``."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = ",".join(str(d) for d in leaf.shape)
        out[jax.tree_util.keystr(path)] = f"{leaf.dtype}[{shape}]"
    return out


def _key_impls(tree: Any) -> dict[str, str]:
    return {jax.tree_util.keystr(p): str(jax.random.key_impl(x))
            for p, x in jax.tree_util.tree_leaves_with_path(tree) if is_prng_key(x)}


def _flat_config(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def config_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """Fields of two (nested) config dicts that differ, as ``"field: old -> new"`` lines."""
    if old is None or new is None:
        return []
    a, b = _flat_config(old), _flat_config(new)
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]


def _describe_mismatch(saved: Mapping[str, str], expected: Mapping[str, str], limit: int = 8
                       ) -> list[str]:
    lines = []
    for path in sorted(set(saved) | set(expected)):
        s, e = saved.get(path), expected.get(path)
        if s != e:
            lines.append(f"{path or '<root>'}: checkpoint has {s or 'no such leaf'}, "
                         f"expected {e or 'no such leaf'}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


class Checkpointer:
    """Numbered checkpoints of a run state in ``directory`` (keeps the latest ``max_to_keep``).

    Args:
        directory: checkpoint folder (created if missing).
        max_to_keep: how many of the most recent checkpoints to keep (older ones are deleted).
    """

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3):
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be a positive int, got {max_to_keep!r}")
        self.directory = pathlib.Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._mngr = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)
        self._failed = False

    # -- queries -------------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """All checkpoint steps present, ascending."""
        return sorted(self._mngr.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def _resolve(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointError(f"no checkpoint in {self.directory}")
        elif step not in self.steps():
            raise CheckpointError(f"no checkpoint step {step} in {self.directory}; "
                                  f"present: {self.steps()}")
        return step

    def read_meta(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of a checkpoint (latest by default); reads no arrays."""
        step = self._resolve(step)
        try:
            out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = out.meta
        except Exception as e:  # orbax raises many types for unreadable files
            raise DamagedCheckpointError(
                f"checkpoint {self.directory / str(step)} is corrupt or unreadable (metadata "
                f"{self.directory / str(step) / 'meta'}: {type(e).__name__})") from e
        where = self.directory / str(step) / "meta"
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k), dict)
                                                 for k in ("leaves", "position", "extra")):
            raise DamagedCheckpointError(f"checkpoint {self.directory / str(step)} has no valid "
                                         f"metadata ({where} is not what bremen_jax writes)")
        sums = meta.get("checksum")
        if isinstance(sums, dict) and "meta" in sums and sums["meta"] != _meta_checksum(meta):
            raise DamagedCheckpointError(f"checkpoint {self.directory / str(step)} is damaged: "
                                         f"its metadata ({where}) fails its checksum")
        return meta

    # -- save / restore ------------------------------------------------------------------------
    def save(self, step: int, state: Any, *, position: Mapping[str, Any] | None = None,
             config: Mapping[str, Any] | None = None,
             extra: Mapping[str, Any] | None = None) -> None:
        """Writes ``state`` (the whole pytree) and JSON metadata as checkpoint ``step``; blocks.

        Args:
            step: non-negative int, increasing across saves.
            state: pytree of arrays; typed PRNG keys are allowed.
            position: JSON-able position in the schedule (e.g. ``{"deployment": 1, "chunk": 2}``).
            config: JSON-able config dict (e.g. ``json.loads(cfg.to_json())``).
            extra: any other JSON-able host-side bookkeeping.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        meta = {"position": dict(position or {}), "config": config, "extra": dict(extra or {}),
                "leaves": leaf_specs(state), "key_impls": _key_impls(state),
                "checksum": {"state": tree_checksum(state),
                             "config": config_checksum(config)}}
        meta["checksum"]["meta"] = _meta_checksum(json.loads(json.dumps(meta)))  # as read back
        try:
            with orbax_errors_quiet():
                self._mngr.save(step, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(_keys_to_data(state)),
                    meta=ocp.args.JsonSave(meta)), force=True)
                self._mngr.wait_until_finished()
        except Exception as e:  # orbax/tensorstore raise many types for a failed write
            self._failed = True
            self._remove_partial(step)
            failed = os_error(e)
            if failed is None:  # not an I/O failure: a bug, with its traceback
                raise
            raise CheckpointWriteError(*failed, str(self.directory / str(step))) from None

    def _remove_partial(self, step: int) -> None:
        """Deletes what a failed save of ``step`` left in orbax's temporary folder
        (``<step>.orbax-checkpoint-tmp*``; frees the space). Committed checkpoints are untouched
        (a step folder that exists is verified by its checksums when restored)."""
        # orbax's writer threads can still be creating files in it when the save has failed
        # (seen on a loaded CPU: the folder was back after one removal, and, with a first
        # empty check taken as the end, again after the loop), so wait for them and remove
        # until the folder has stayed gone for 0.5 s (at most 15 s in all); close() sweeps
        # once more after orbax's threads are joined.
        with contextlib.suppress(Exception):
            self._mngr.wait_until_finished()
        self._sweep_partial(f"{step}.orbax-checkpoint-tmp*", quiet_s=0.5, settle_s=15.0)
        with contextlib.suppress(Exception):
            self._mngr.reload()

    def _sweep_partial(self, pattern: str, quiet_s: float, settle_s: float) -> None:
        """Removes the folders matching ``pattern`` until none has appeared for ``quiet_s``
        seconds, or ``settle_s`` seconds have passed."""
        start = quiet_since = time.monotonic()
        while True:
            left = list(self.directory.glob(pattern))
            for p in left:
                shutil.rmtree(p, ignore_errors=True)
            now = time.monotonic()
            if left:
                quiet_since = now
            if now - quiet_since >= quiet_s or now - start >= settle_s:
                return
            time.sleep(0.05)

    def restore(self, abstract_state: Any, step: int | None = None,
                expected_config: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint ``step`` (latest by default) into ``abstract_state``'s structure.

        Args:
            abstract_state: pytree of ``ShapeDtypeStruct`` (e.g.
                ``jax.eval_shape(phases.init, key)``) or of arrays; typed-key leaves come back as
                typed keys.
            step: checkpoint step, or ``None`` for the latest.
            expected_config: the config the caller runs with; named in the error when the
                checkpoint's leaves do not fit.
        Returns:
            ``(state, meta)``; ``meta`` has ``position``, ``config``, ``extra``.
        Raises:
            CheckpointError: no checkpoint, unreadable/corrupt files, or leaves that differ from
                ``abstract_state`` (the message lists them and the config fields that differ).
        """
        step = self._resolve(step)
        meta = self.read_meta(step)
        expected = leaf_specs(abstract_state)
        if meta["leaves"] != expected:
            lines = _describe_mismatch(meta["leaves"], expected)
            diff = config_diff(meta.get("config"), expected_config)
            msg = (f"checkpoint {self.directory / str(step)} does not match the expected state:\n  "
                   + "\n  ".join(lines))
            if diff:
                msg += ("\nconfig fields that differ (checkpoint -> current):\n  "
                        + "\n  ".join(diff))
            raise CheckpointError(msg)
        impls = meta.get("key_impls", {})
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _abstract_key_data(abstract_state))
        try:
            out = self._mngr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))
            data = out.state
        except Exception as e:  # orbax raises many types for unreadable arrays
            raise DamagedCheckpointError(f"checkpoint {self.directory / str(step)} is corrupt "
                                         f"or unreadable (state: {type(e).__name__})") from e
        sums = meta.get("checksum", {})
        if sums.get("config") not in (None, config_checksum(meta.get("config"))):
            raise DamagedCheckpointError(f"checkpoint {self.directory / str(step)} is damaged: "
                                         f"its stored config fails its checksum")
        flat_abs, treedef = jax.tree_util.tree_flatten_with_path(abstract_state)
        flat_data = treedef.flatten_up_to(data)
        leaves = []
        for (path, a), d in zip(flat_abs, flat_data):
            if is_prng_key(a):
                d = jax.random.wrap_key_data(d, impl=impls[jax.tree_util.keystr(path)])
            leaves.append(d)
        state = jax.tree_util.tree_unflatten(treedef, leaves)
        if sums.get("state") not in (None, tree_checksum(state)):
            raise DamagedCheckpointError(f"checkpoint {self.directory / str(step)} is damaged: "
                                         f"its arrays fail their checksum")
        return state, meta

    def restore_intact(self, abstract_state: Any, expected_config: Mapping[str, Any] | None = None
                       ) -> tuple[Any, dict[str, Any], list[str]]:
        """The newest checkpoint that restores intact: ``(state, meta, skipped)`` where
        ``skipped`` names each damaged newer checkpoint (one line each); those are moved aside
        (:meth:`quarantine`) only once an intact one is found, so a refusal moves nothing.

        Raises:
            CheckpointError: no checkpoint, a mismatching (not damaged) one, or none intact.
        """
        damaged = []
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore(abstract_state, step, expected_config)
            except DamagedCheckpointError as e:
                damaged.append((step, str(e)))
                continue
            skipped = [f"{msg} (moved to {self.quarantine(s).name})" for s, msg in damaged]
            return state, meta, skipped
        if not damaged:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        raise DamagedCheckpointError(f"no intact checkpoint in {self.directory}: "
                                     + "; ".join(msg for _, msg in damaged)
                                     + " (nothing was moved or changed)")

    def quarantine(self, step: int) -> pathlib.Path:
        """Moves a damaged checkpoint aside (``damaged-<step>-<time>``; kept, never deleted) so
        that the run can continue past it."""
        import time

        dest = self.directory / f"damaged-{step}-{int(time.time())}"
        (self.directory / str(step)).rename(dest)
        self._mngr.reload()
        return dest

    def close(self) -> None:
        """Waits for orbax and closes it; after a failed save (already raised) errors of the
        closing are not raised again."""
        try:
            self._mngr.wait_until_finished()
            self._mngr.close()
        except Exception:  # the failed save was reported as CheckpointWriteError already
            if not self._failed:
                raise
        finally:
            if self._failed:  # orbax's threads are done: what they wrote late goes too
                self._sweep_partial("*.orbax-checkpoint-tmp*", quiet_s=0.0, settle_s=0.0)

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _abstract_key_data(tree: Any) -> Any:
    """Replaces typed-key leaves by the abstract shape/dtype of their key data."""
    return jax.tree.map(
        lambda x: jax.eval_shape(jax.random.key_data, x) if is_prng_key(x) else x, tree)
