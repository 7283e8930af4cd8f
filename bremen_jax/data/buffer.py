"""Fixed-capacity transition buffer with per-batch segments and a train/validation flag.

BREMEN accumulates every deployment's batch for the dynamics ensemble and splits *each* batch
**in order** (no shuffle): the first 85% of its transitions go to the training split, the last
15% to the validation split, and both splits accumulate across deployments
(``reference/bremen-algorithm.md`` §2 "Train/val split", §8; original
``PathCollection.to_data_collections``: ``_n = int(num_data * split_ratio)``, train ``[:_n]``,
validation ``[_n:]``). Behaviour cloning uses only the latest batch (§3 "Data").

Shapes never change (``reference/style.md`` §4 pitfall 6): the buffer is preallocated with
``capacity`` rows; ``size`` counts the filled rows ``[0, size)``; every batch inserted becomes a
*segment* whose first row and length are recorded, so "all data", "training split",
"validation split" and "latest batch" are boolean masks over the same arrays, and inserting
deployment after deployment reuses one compiled program.

Rounding rule of the split: for a batch of ``B`` rows, ``n_train = int(B * (1 - val_fraction))``
(floor, as the original's ``int(num_data * 0.85)``), ``n_val = B - n_train``. For the default
``val_fraction = 0.15``, ``1 - 0.15 == 0.85`` exactly in float64, so this equals the original
for every ``B``.

Per-block split (``num_blocks > 1``, ``dynamics.val_split='per_env'``): the batch is
``num_blocks`` equal contiguous blocks (the real environments of an env-major collection, see
``envs.acting.flatten_env_major``) and the last ``val_fraction`` of *each* block is validation,
the rule above applied per block of ``L = B / num_blocks`` rows: ``num_blocks * int(L * (1 -
val_fraction))`` training rows. With ``num_blocks = 1`` this is the original's split.

Overflow: an insert never changes shapes and never overwrites filled rows. Rows that do not fit
in ``capacity`` are dropped (the first ``capacity - size`` rows of the batch are kept, with the
split flags they would have had); when the segment table is full (``max_segments`` batches
already recorded) the whole batch is dropped. Either way ``overflowed`` becomes (and stays)
True. Drivers call :func:`check_fits` on the host before compiling so this never happens in a
correctly sized run.
"""

from __future__ import annotations

from typing import Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from bremen_jax.types import PRNGKey, Transition, check_positive_int


@flax.struct.dataclass
class Buffer:
    """Preallocated transitions plus split/segment bookkeeping (all leaves fixed-shape).

    Attributes:
        data: Transition with leaves ``[capacity, ...]`` float32; rows ``>= size`` are zeros.
        is_val: ``[capacity]`` bool, row belongs to the validation split.
        segment: ``[capacity]`` int32, index of the inserted batch the row came from
            (-1 for empty rows).
        seg_start: ``[max_segments]`` int32, first row of each segment.
        seg_size: ``[max_segments]`` int32, rows stored for each segment (0 = unused).
        size: ``()`` int32, number of filled rows.
        num_segments: ``()`` int32, number of segments recorded.
        overflowed: ``()`` bool, some insert did not fit (its extra rows were dropped).
    """

    data: Transition
    is_val: jax.Array
    segment: jax.Array
    seg_start: jax.Array
    seg_size: jax.Array
    size: jax.Array
    num_segments: jax.Array
    overflowed: jax.Array

    @property
    def capacity(self) -> int:
        """Number of rows (static, from the shapes)."""
        return self.is_val.shape[-1]

    @property
    def max_segments(self) -> int:
        """Number of segment slots (static, from the shapes)."""
        return self.seg_start.shape[-1]


def init_buffer(capacity: int, obs_dim: int, act_dim: int, max_segments: int) -> Buffer:
    """Empty buffer with room for ``capacity`` rows and ``max_segments`` inserted batches.

    Args:
        capacity: total rows (e.g. deployments x batch size).
        obs_dim: observation size.
        act_dim: action size.
        max_segments: most batches that can be inserted (e.g. number of deployments).

    Returns:
        A :class:`Buffer`; memory is ``capacity * (2*obs_dim + act_dim + 3) * 4`` bytes plus
        ``5 * capacity`` bytes of flags.
    """
    check_positive_int(capacity, "capacity")
    check_positive_int(obs_dim, "obs_dim")
    check_positive_int(act_dim, "act_dim")
    check_positive_int(max_segments, "max_segments")
    f32 = jnp.float32
    data = Transition(
        obs=jnp.zeros((capacity, obs_dim), f32),
        action=jnp.zeros((capacity, act_dim), f32),
        reward=jnp.zeros((capacity,), f32),
        next_obs=jnp.zeros((capacity, obs_dim), f32),
        done=jnp.zeros((capacity,), f32),
        truncation=jnp.zeros((capacity,), f32),
    )
    return Buffer(
        data=data,
        is_val=jnp.zeros((capacity,), bool),
        segment=jnp.full((capacity,), -1, jnp.int32),
        seg_start=jnp.zeros((max_segments,), jnp.int32),
        seg_size=jnp.zeros((max_segments,), jnp.int32),
        size=jnp.zeros((), jnp.int32),
        num_segments=jnp.zeros((), jnp.int32),
        overflowed=jnp.zeros((), bool),
    )


def split_sizes(batch_size: int, val_fraction: float = 0.15, num_blocks: int = 1
                ) -> Tuple[int, int]:
    """Host-side ``(n_train, n_val)`` of one batch: ``n_train = int(B * (1 - val_fraction))``,
    or with ``num_blocks`` blocks ``num_blocks * int(B / num_blocks * (1 - val_fraction))``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    check_positive_int(num_blocks, "num_blocks")
    if batch_size % num_blocks:
        raise ValueError(f"a batch of {batch_size} rows cannot be split into {num_blocks} equal "
                         f"blocks; expected a batch size divisible by num_blocks")
    n_train = num_blocks * int(batch_size // num_blocks * (1.0 - val_fraction))
    return n_train, batch_size - n_train


def _check_batch(buffer: Buffer, batch: Transition) -> int:
    """Static shape check of a batch against the buffer; returns B."""
    obs_dim = buffer.data.obs.shape[-1]
    act_dim = buffer.data.action.shape[-1]
    if batch.obs.ndim != 2:
        raise ValueError(f"batch.obs must be [B, obs_dim], got shape {batch.obs.shape}")
    n = batch.obs.shape[0]
    expected = {
        "obs": (n, obs_dim),
        "action": (n, act_dim),
        "reward": (n,),
        "next_obs": (n, obs_dim),
        "done": (n,),
        "truncation": (n,),
    }
    for field, shape in expected.items():
        got = tuple(getattr(batch, field).shape)
        if got != shape:
            raise ValueError(f"batch.{field} has shape {got}; expected {shape}")
    if n == 0:
        raise ValueError("batch is empty (B = 0)")
    return n


def insert(buffer: Buffer, batch: Transition, val_fraction: float = 0.15,
           num_blocks: int = 1) -> Buffer:
    """Append a batch as a new segment, first part train, last ``val_fraction`` validation.

    Jittable with ``val_fraction`` and ``num_blocks`` static (and ``B`` static through the
    shapes); the buffer's shapes are unchanged, so repeated inserts of equally sized batches
    compile once. Rows go to ``[size, size + B)``; see the module docstring for the rounding and
    overflow rules.

    Args:
        buffer: the buffer (donate it under ``jit`` to update in place).
        batch: Transition with leaves ``[B, ...]``, in collection order.
        val_fraction: static fraction of the batch, taken from its end, marked validation
            (0.15 as the original; 0.0 marks the whole batch train).
        num_blocks: static; 1 (the original): the batch's last ``val_fraction`` is validation;
            ``k``: the batch is ``k`` equal contiguous blocks (env-major real environments) and
            the last ``val_fraction`` of each block is validation. ``B`` must divide by ``k``.

    Returns:
        The updated buffer.
    """
    n = _check_batch(buffer, batch)
    n_train, _ = split_sizes(n, val_fraction, num_blocks)
    block = n // num_blocks
    block_train = n_train // num_blocks
    capacity = buffer.capacity

    table_room = buffer.num_segments < buffer.max_segments
    room = jnp.where(table_room, capacity - buffer.size, 0)
    n_stored = jnp.minimum(n, room).astype(jnp.int32)
    offsets = jnp.arange(n, dtype=jnp.int32)
    # Rows that do not fit get an out-of-range index and are dropped by the scatter.
    rows = jnp.where(offsets < n_stored, buffer.size + offsets, capacity)

    def put(dst, src):
        return dst.at[rows].set(src.astype(dst.dtype), mode="drop")

    seg_id = buffer.num_segments
    slot = jnp.where(table_room, seg_id, buffer.max_segments)  # out of range -> dropped
    return buffer.replace(
        data=jax.tree.map(put, buffer.data, batch),
        is_val=put(buffer.is_val, offsets % block >= block_train),
        segment=put(buffer.segment, jnp.broadcast_to(seg_id, (n,))),
        seg_start=buffer.seg_start.at[slot].set(buffer.size, mode="drop"),
        seg_size=buffer.seg_size.at[slot].set(n_stored, mode="drop"),
        size=buffer.size + n_stored,
        num_segments=buffer.num_segments + table_room.astype(jnp.int32),
        overflowed=buffer.overflowed | (n_stored < n),
    )


def check_fits(capacity: int, batch_size: int, num_batches: int,
               max_segments: Optional[int] = None) -> None:
    """Host-side check that ``num_batches`` inserts of ``batch_size`` rows fit.

    Raises:
        ValueError: naming the field and the capacity that would be needed.
    """
    check_positive_int(capacity, "capacity")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(num_batches, "num_batches")
    needed = batch_size * num_batches
    if needed > capacity:
        raise ValueError(
            f"buffer capacity {capacity} is too small for {num_batches} batches of "
            f"{batch_size} transitions; expected capacity >= {needed}")
    if max_segments is not None and num_batches > max_segments:
        raise ValueError(
            f"max_segments {max_segments} is too small for {num_batches} batches; "
            f"expected max_segments >= {num_batches}")


# ----------------------------------------------------------------------------- masks


def valid_mask(b: Buffer) -> jax.Array:
    """``[capacity]`` bool, True for filled rows ``[0, size)``."""
    return jnp.arange(b.capacity, dtype=jnp.int32) < b.size


def train_mask(b: Buffer) -> jax.Array:
    """``[capacity]`` bool, filled rows of the training split (all segments)."""
    return valid_mask(b) & ~b.is_val


def val_mask(b: Buffer) -> jax.Array:
    """``[capacity]`` bool, filled rows of the validation split (all segments)."""
    return valid_mask(b) & b.is_val


def segment_mask(b: Buffer, seg) -> jax.Array:
    """``[capacity]`` bool, rows of segment ``seg`` (a traced int is fine; -1 matches nothing)."""
    return (b.segment == seg) & valid_mask(b) & (jnp.asarray(seg) >= 0)


def latest_segment_mask(b: Buffer) -> jax.Array:
    """``[capacity]`` bool, rows of the most recently recorded batch (none when empty)."""
    return segment_mask(b, b.num_segments - 1)


def segment_slice(b: Buffer, seg, length: int) -> Transition:
    """``length`` rows starting at ``seg_start[seg]`` (``lax.dynamic_slice``, static length).

    The cheap way to take "the latest batch only" for behaviour cloning: with ``length`` equal
    to the batch size the slice is exactly that segment. If ``length > seg_size[seg]`` the slice
    runs into the following rows; if ``seg_start + length > capacity`` JAX clamps the start so
    the slice ends at ``capacity``. :func:`segment_slice_mask` gives the rows that belong.

    Returns:
        Transition with leaves ``[length, ...]``.
    """
    check_positive_int(length, "length")
    if length > b.capacity:
        raise ValueError(f"length {length} exceeds the buffer capacity {b.capacity}")
    start = b.seg_start[jnp.clip(seg, 0, b.max_segments - 1)]
    return jax.tree.map(lambda x: lax.dynamic_slice_in_dim(x, start, length, axis=0), b.data)


def segment_slice_mask(b: Buffer, seg, length: int) -> jax.Array:
    """``[length]`` bool: which rows of ``segment_slice(b, seg, length)`` belong to ``seg``."""
    check_positive_int(length, "length")
    start = b.seg_start[jnp.clip(seg, 0, b.max_segments - 1)]
    return lax.dynamic_slice_in_dim(segment_mask(b, seg), start, length, axis=0)


# ----------------------------------------------------------------------------- statistics


def masked_mean_std(x: jax.Array, mask: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Per-dimension mean and population std (``np.std``, ddof=0) over rows where ``mask``.

    Two-pass (mean first, then the mean squared deviation) for float32 accuracy. Rows outside
    the mask are excluded with ``where`` (not multiplied by 0), so NaN/inf there cannot leak.
    With an empty mask the result is mean 0 and std 1, an identity normalisation.

    Args:
        x: ``[N, D]`` (or ``[N, ...]``) values.
        mask: ``[N]`` bool.

    Returns:
        ``(mean, std)``, each ``[D]`` (``x.shape[1:]``) float32.
    """
    x = jnp.asarray(x, jnp.float32)
    m = jnp.reshape(mask, mask.shape + (1,) * (x.ndim - 1))
    count = jnp.sum(mask.astype(jnp.float32))
    denom = jnp.maximum(count, 1.0)
    mean = jnp.sum(jnp.where(m, x, 0.0), axis=0) / denom
    var = jnp.sum(jnp.where(m, jnp.square(x - mean), 0.0), axis=0) / denom
    empty = count == 0
    return jnp.where(empty, 0.0, mean), jnp.where(empty, 1.0, jnp.sqrt(var))


# ----------------------------------------------------------------------------- sampling


def sample_indices(mask: jax.Array, key: PRNGKey, batch_size: int) -> jax.Array:
    """Row indices drawn uniformly with replacement among rows where ``mask``.

    Draws ``u ~ U{0, .., count-1}`` and maps it to the ``u``-th True row by a binary search
    in ``cumsum(mask)``: ``O(N + batch_size log N)``, no host sync. An empty mask returns
    zeros (callers check counts where that can happen).

    Args:
        mask: ``[N]`` bool.
        key: PRNG key.
        batch_size: static number of draws.

    Returns:
        ``[batch_size]`` int32 indices into ``[0, N)``.
    """
    cums = jnp.cumsum(mask.astype(jnp.int32))
    count = cums[-1]
    u = jax.random.randint(key, (batch_size,), 0, jnp.maximum(count, 1), dtype=jnp.int32)
    idx = jnp.searchsorted(cums, u, side="right").astype(jnp.int32)
    return jnp.where(count > 0, jnp.minimum(idx, mask.shape[0] - 1), 0)


def sample(b: Buffer, key: PRNGKey, batch_size: int,
           mask: Optional[jax.Array] = None) -> Transition:
    """Minibatch of ``batch_size`` transitions (with replacement), default from the train split.

    Returns:
        Transition with leaves ``[batch_size, ...]``.
    """
    if mask is None:
        mask = train_mask(b)
    idx = sample_indices(mask, key, batch_size)
    return jax.tree.map(lambda x: x[idx], b.data)


def permutation_of_mask(mask: jax.Array, key: PRNGKey) -> Tuple[jax.Array, jax.Array]:
    """Rows where ``mask`` in uniformly random order, packed first (epoch-style minibatches).

    A uniform random permutation followed by a stable sort on ``~mask`` moves the masked rows
    to the front without disturbing their random order.

    Args:
        mask: ``[N]`` bool.
        key: PRNG key.

    Returns:
        ``(indices [N] int32, count () int32)``: ``indices[:count]`` is a random permutation of
        the masked rows; the remaining entries are the unmasked rows (do not use them).
    """
    n = mask.shape[0]
    perm = jax.random.permutation(key, n).astype(jnp.int32)
    order = jnp.argsort(~mask[perm], stable=True)
    return perm[order], jnp.sum(mask.astype(jnp.int32))
