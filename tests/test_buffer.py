"""Tests for bremen_jax.data.buffer: insert/split/segments, masks, statistics, sampling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.data import buffer as bf
from bremen_jax.types import Transition

OBS, ACT = 3, 2


def make_batch(n: int, start: float = 0.0) -> Transition:
    """Rows numbered ``start .. start+n-1``: obs[i] = [r, r, r], reward[i] = r, etc."""
    r = np.arange(n, dtype=np.float32) + start
    return Transition(
        obs=jnp.asarray(np.repeat(r[:, None], OBS, 1)),
        action=jnp.asarray(np.repeat(-r[:, None], ACT, 1)),
        reward=jnp.asarray(r),
        next_obs=jnp.asarray(np.repeat(r[:, None] + 0.5, OBS, 1)),
        done=jnp.asarray((r % 5 == 4).astype(np.float32)),
        truncation=jnp.zeros((n,), jnp.float32),
    )


insert_jit = jax.jit(bf.insert, static_argnames=("val_fraction",))


def test_init_shapes_and_dtypes():
    b = bf.init_buffer(50, OBS, ACT, 4)
    assert b.capacity == 50 and b.max_segments == 4
    chex.assert_shape([b.data.obs, b.data.next_obs], (50, OBS))
    chex.assert_shape(b.data.action, (50, ACT))
    chex.assert_type([b.data.obs, b.data.reward, b.data.done], jnp.float32)
    chex.assert_type([b.segment, b.seg_start, b.size, b.num_segments], jnp.int32)
    assert int(b.size) == 0 and not bool(b.overflowed)
    np.testing.assert_array_equal(b.segment, -1)
    assert not bool(bf.valid_mask(b).any())
    assert not bool(bf.latest_segment_mask(b).any())  # empty rows have segment -1


@pytest.mark.parametrize("kwargs, field", [
    (dict(capacity=0, obs_dim=3, act_dim=2, max_segments=1), "capacity"),
    (dict(capacity=10, obs_dim=-1, act_dim=2, max_segments=1), "obs_dim"),
    (dict(capacity=10, obs_dim=3, act_dim=2, max_segments=0), "max_segments"),
    (dict(capacity=10.0, obs_dim=3, act_dim=2, max_segments=1), "capacity"),
])
def test_init_rejects_bad_sizes(kwargs, field):
    with pytest.raises(ValueError, match=field):
        bf.init_buffer(**kwargs)


def test_split_sizes_matches_original_int_rule():
    assert bf.split_sizes(20) == (17, 3)
    assert bf.split_sizes(10) == (8, 2)  # int(8.5) = 8 train, 2 val
    assert bf.split_sizes(200_000) == (170_000, 30_000)
    assert bf.split_sizes(7, 0.0) == (7, 0)
    for n in range(1, 3000):
        assert bf.split_sizes(n)[0] == int(n * 0.85)
    with pytest.raises(ValueError, match="val_fraction"):
        bf.split_sizes(10, 1.0)


def test_insert_two_batches_layout():
    b = bf.init_buffer(40, OBS, ACT, 3)
    b = insert_jit(b, make_batch(20, 0.0))
    b = insert_jit(b, make_batch(10, 100.0))
    assert int(b.size) == 30 and int(b.num_segments) == 2 and not bool(b.overflowed)
    np.testing.assert_array_equal(b.seg_start, [0, 20, 0])
    np.testing.assert_array_equal(b.seg_size, [20, 10, 0])
    np.testing.assert_array_equal(b.segment, [0] * 20 + [1] * 10 + [-1] * 10)
    # Batch 1: rows 0..16 train, 17..19 val; batch 2: 20..27 train, 28..29 val (ordered).
    expected_val = np.zeros(40, bool)
    expected_val[17:20] = True
    expected_val[28:30] = True
    np.testing.assert_array_equal(b.is_val, expected_val)
    np.testing.assert_array_equal(bf.val_mask(b), expected_val)
    expected_train = np.zeros(40, bool)
    expected_train[:17] = True
    expected_train[20:28] = True
    np.testing.assert_array_equal(bf.train_mask(b), expected_train)
    np.testing.assert_array_equal(bf.valid_mask(b), np.arange(40) < 30)
    np.testing.assert_array_equal(
        b.data.reward, np.concatenate([np.arange(20), 100 + np.arange(10), np.zeros(10)]))
    np.testing.assert_array_equal(b.data.obs[25], [105.0] * OBS)
    np.testing.assert_array_equal(b.data.action[3], [-3.0] * ACT)
    np.testing.assert_array_equal(bf.segment_mask(b, 1), (np.arange(40) >= 20) & (np.arange(40) < 30))
    np.testing.assert_array_equal(bf.latest_segment_mask(b), bf.segment_mask(b, 1))
    assert not bool(bf.segment_mask(b, -1).any())


def test_insert_jit_matches_no_jit():
    b0 = bf.init_buffer(30, OBS, ACT, 2)
    a = bf.insert(bf.insert(b0, make_batch(12)), make_batch(7, 50.0), val_fraction=0.3)
    c = insert_jit(insert_jit(b0, make_batch(12)), make_batch(7, 50.0), val_fraction=0.3)
    chex.assert_trees_all_equal(a, c)
    # 7 rows with 30% validation: int(7 * 0.7) = 4 train, 3 val.
    np.testing.assert_array_equal(a.is_val[12:19], [False] * 4 + [True] * 3)


def test_split_sizes_per_block():
    # 4 envs x 20 steps: int(20 * 0.85) = 17 train per env -> 68 train, 12 val.
    assert bf.split_sizes(80, 0.15, num_blocks=4) == (68, 12)
    # 3 blocks of 10 rows: int(8.5) = 8 per block -> 24 train (one batch of 30: int(25.5) = 25).
    assert bf.split_sizes(30, 0.15, num_blocks=3) == (24, 6)
    assert bf.split_sizes(30, 0.15) == (25, 5)
    with pytest.raises(ValueError, match="divisible by num_blocks"):
        bf.split_sizes(10, 0.15, num_blocks=3)
    with pytest.raises(ValueError, match="num_blocks"):
        bf.split_sizes(10, 0.15, num_blocks=0)


def test_insert_per_block_marks_the_end_of_every_block():
    """dynamics.val_split='per_env': 3 envs x 10 steps stored env by env; the last 2 steps of
    every env (int(10 * 0.85) = 8 train each) are validation, not the last env's 5."""
    b = bf.init_buffer(40, OBS, ACT, 2)
    b = bf.insert(b, make_batch(30), 0.15, num_blocks=3)
    expected = np.zeros(40, bool)
    for e in range(3):
        expected[e * 10 + 8:e * 10 + 10] = True
    np.testing.assert_array_equal(b.is_val, expected)
    # the ordered split of the same batch: rows 25..29
    o = bf.insert(bf.init_buffer(40, OBS, ACT, 2), make_batch(30), 0.15)
    np.testing.assert_array_equal(np.flatnonzero(o.is_val), [25, 26, 27, 28, 29])
    # a second batch, jitted with both arguments static, keeps its own blocks (rows 30..37)
    j = jax.jit(bf.insert, static_argnames=("val_fraction", "num_blocks"))
    b = j(b, make_batch(8, 100.0), val_fraction=0.25, num_blocks=2)  # int(4 * 0.75) = 3 train
    np.testing.assert_array_equal(np.flatnonzero(b.is_val[30:38]), [3, 7])
    np.testing.assert_array_equal(bf.train_mask(b)[30:38], [True] * 3 + [False] + [True] * 3
                                  + [False])


def test_insert_compiles_once_across_deployments():
    chex.clear_trace_counter()
    counted = jax.jit(chex.assert_max_traces(bf.insert, n=1), static_argnames=("val_fraction",))
    b = bf.init_buffer(100, OBS, ACT, 5)
    for d in range(5):
        b = counted(b, make_batch(20, 100.0 * d))
    assert int(b.size) == 100 and int(b.num_segments) == 5
    chex.clear_trace_counter()


def test_insert_with_donation():
    ins = jax.jit(bf.insert, donate_argnums=0)
    b = bf.init_buffer(40, OBS, ACT, 2)
    b = ins(b, make_batch(20))
    b = ins(b, make_batch(20, 20.0))
    np.testing.assert_array_equal(b.data.reward, np.arange(40))


def test_overflow_keeps_fitting_rows_and_flags():
    b = bf.init_buffer(25, OBS, ACT, 4)
    b = insert_jit(b, make_batch(20))
    b = insert_jit(b, make_batch(20, 100.0))  # only 5 rows fit
    assert bool(b.overflowed)
    assert int(b.size) == 25 and int(b.num_segments) == 2
    np.testing.assert_array_equal(b.seg_size[:2], [20, 5])
    # Existing rows untouched, first 5 rows of batch 2 stored, all of them train.
    np.testing.assert_array_equal(b.data.reward, np.concatenate([np.arange(20), 100 + np.arange(5)]))
    np.testing.assert_array_equal(b.is_val[20:], False)
    # A further insert stores nothing and corrupts nothing.
    before = b
    b = insert_jit(b, make_batch(20, 500.0))
    assert int(b.size) == 25 and bool(b.overflowed)
    chex.assert_trees_all_equal(b.data, before.data)
    chex.assert_trees_all_equal(b.is_val, before.is_val)


def test_segment_table_full_drops_whole_batch():
    b = bf.init_buffer(100, OBS, ACT, 2)
    b = insert_jit(b, make_batch(10))
    b = insert_jit(b, make_batch(10, 10.0))
    assert not bool(b.overflowed)
    c = insert_jit(b, make_batch(10, 20.0))
    assert bool(c.overflowed)
    assert int(c.size) == 20 and int(c.num_segments) == 2
    chex.assert_trees_all_equal(c.data, b.data)
    chex.assert_trees_all_equal(c.segment, b.segment)


def test_insert_rejects_bad_batch_shapes():
    b = bf.init_buffer(10, OBS, ACT, 2)
    bad = make_batch(4).replace(action=jnp.zeros((4, ACT + 1)))
    with pytest.raises(ValueError, match=r"batch.action has shape \(4, 3\); expected \(4, 2\)"):
        bf.insert(b, bad)
    bad = make_batch(4).replace(reward=jnp.zeros((4, 1)))
    with pytest.raises(ValueError, match="batch.reward"):
        bf.insert(b, bad)


def test_check_fits():
    bf.check_fits(100, 20, 5)
    with pytest.raises(ValueError, match="capacity 99 is too small.*>= 100"):
        bf.check_fits(99, 20, 5)
    with pytest.raises(ValueError, match="max_segments 4"):
        bf.check_fits(100, 20, 5, max_segments=4)


def test_segment_slice_latest_batch():
    b = bf.init_buffer(40, OBS, ACT, 3)
    b = insert_jit(b, make_batch(20))
    b = insert_jit(b, make_batch(15, 100.0))
    sl = jax.jit(bf.segment_slice, static_argnames="length")(b, b.num_segments - 1, length=15)
    np.testing.assert_array_equal(sl.reward, 100 + np.arange(15))
    chex.assert_shape(sl.obs, (15, OBS))
    np.testing.assert_array_equal(bf.segment_slice(b, 0, 20).reward, np.arange(20))
    m = bf.segment_slice_mask(b, 0, 25)
    np.testing.assert_array_equal(m, np.arange(25) < 20)
    with pytest.raises(ValueError, match="length 41 exceeds"):
        bf.segment_slice(b, 0, 41)


def test_masked_mean_std_against_numpy():
    x = np.array([[1.0, 10.0], [3.0, 10.0], [100.0, -5.0], [5.0, 40.0]], np.float32)
    mask = np.array([True, True, False, True])
    mean, std = jax.jit(bf.masked_mean_std)(jnp.asarray(x), jnp.asarray(mask))
    # Hand: rows 0,1,3 -> col0 mean 3, var (4+0+4)/3; col1 mean 20, var (100+100+400)/3.
    np.testing.assert_allclose(mean, [3.0, 20.0], rtol=1e-6)
    np.testing.assert_allclose(std, [np.sqrt(8 / 3), np.sqrt(200.0)], rtol=1e-6)
    np.testing.assert_allclose(std, np.std(x[mask], axis=0), rtol=1e-6)


def test_masked_mean_std_ignores_nan_outside_mask_and_empty_is_identity():
    x = jnp.array([[1.0], [np.nan], [3.0]])
    mean, std = bf.masked_mean_std(x, jnp.array([True, False, True]))
    np.testing.assert_allclose(mean, [2.0])
    np.testing.assert_allclose(std, [1.0])
    mean, std = bf.masked_mean_std(x, jnp.zeros(3, bool))
    np.testing.assert_array_equal(mean, [0.0])
    np.testing.assert_array_equal(std, [1.0])


def test_masked_mean_std_on_buffer_train_split():
    b = bf.init_buffer(40, OBS, ACT, 3)
    b = insert_jit(b, make_batch(20))
    b = insert_jit(b, make_batch(10, 100.0))
    mean, std = bf.masked_mean_std(b.data.reward, bf.train_mask(b))
    train = np.concatenate([np.arange(17), 100 + np.arange(8)]).astype(np.float32)
    np.testing.assert_allclose(mean, train.mean(), rtol=1e-6)
    np.testing.assert_allclose(std, train.std(), rtol=1e-6)


def test_sample_indices_only_masked_and_uniform():
    mask = np.zeros(50, bool)
    mask[[3, 7, 8, 20, 49]] = True
    idx = jax.jit(bf.sample_indices, static_argnums=2)(jnp.asarray(mask), jax.random.key(0), 50_000)
    chex.assert_shape(idx, (50_000,))
    chex.assert_type(idx, jnp.int32)
    assert set(np.unique(np.asarray(idx)).tolist()) == {3, 7, 8, 20, 49}
    counts = np.bincount(np.asarray(idx), minlength=50)[mask]
    # Each expected 10,000 draws; binomial sd ~ 89, so +-500 is > 5 sd.
    assert np.all(np.abs(counts - 10_000) < 500), counts


def test_sample_indices_empty_mask_returns_zeros():
    idx = bf.sample_indices(jnp.zeros(10, bool), jax.random.key(1), 8)
    np.testing.assert_array_equal(idx, 0)


def test_sample_default_train_split_and_latest_segment():
    b = bf.init_buffer(40, OBS, ACT, 3)
    b = insert_jit(b, make_batch(20))
    b = insert_jit(b, make_batch(10, 100.0))
    batch = jax.jit(bf.sample, static_argnums=2)(b, jax.random.key(2), 2000)
    r = np.asarray(batch.reward)
    allowed = set(range(17)) | set(range(100, 108))
    assert set(r.astype(int).tolist()) == allowed  # only train rows, all of them hit
    np.testing.assert_array_equal(batch.obs[:, 0], r)  # rows stay aligned across leaves
    latest = bf.sample(b, jax.random.key(3), 500, mask=bf.latest_segment_mask(b))
    assert set(np.asarray(latest.reward).astype(int).tolist()) == set(range(100, 110))


def test_permutation_of_mask():
    mask = jnp.asarray(np.arange(30) % 3 == 0)
    idx, count = jax.jit(bf.permutation_of_mask)(mask, jax.random.key(4))
    chex.assert_shape(idx, (30,))
    assert int(count) == 10
    first = np.asarray(idx[:10])
    assert sorted(first.tolist()) == list(range(0, 30, 3))
    assert sorted(np.asarray(idx).tolist()) == list(range(30))
    assert first.tolist() != sorted(first.tolist())  # shuffled (prob. 1/10! of failing)
    idx2, _ = bf.permutation_of_mask(mask, jax.random.key(5))
    assert np.asarray(idx2[:10]).tolist() != first.tolist()


def test_vmap_over_runs():
    b = jax.vmap(lambda _: bf.init_buffer(20, OBS, ACT, 2))(jnp.arange(2))
    batch = jax.tree.map(lambda x: jnp.stack([x, x + 1]), make_batch(10))
    b = jax.vmap(bf.insert)(b, batch)
    np.testing.assert_array_equal(b.size, [10, 10])
    np.testing.assert_array_equal(b.data.reward[1, :10], np.arange(10) + 1)
    assert b.capacity == 20
