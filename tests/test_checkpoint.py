"""Checkpoints: whole-RunState round trip (typed keys), schedule position and config in the
metadata, max_to_keep, and clear errors for missing, corrupt and mismatched checkpoints."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases
from bremen_jax.run.checkpoint import CheckpointError, Checkpointer, config_diff, leaf_specs


def _cfg(*overrides):
    return config_lib.apply_overrides(config_lib.load_config("test"), list(overrides))


@pytest.fixture(scope="module")
def setup():
    cfg = _cfg()
    static, _ = config_lib.split(cfg)
    phases = make_phases(static)
    state = jax.jit(phases.init)(jax.random.key(3))
    # Make the leaves distinguishable from a fresh init (a fresh init would hide a no-op restore).
    state = state.replace(env_steps=jnp.int32(1234), deployment=jnp.int32(2),
                          key=jax.random.fold_in(state.key, 7))
    abstract = jax.eval_shape(phases.init, jax.random.key(0))
    return cfg, phases, state, abstract


def _key_data(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x)
                        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x, tree)


def _assert_same(a, b):
    a, b = _key_data(a), _key_data(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_whole_state_with_typed_keys(setup, tmp_path):
    cfg, _, state, abstract = setup
    config = json.loads(cfg.to_json())
    with Checkpointer(tmp_path / "ck") as ck:
        assert ck.latest_step() is None
        ck.save(5, state, position={"deployment": 2, "chunk": 1}, config=config,
                extra={"returns": [1.5, 2.5]})
        restored, meta = ck.restore(abstract)
    _assert_same(restored, state)
    assert jnp.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.uniform(restored.key, (3,)),
                                  jax.random.uniform(state.key, (3,)))
    assert meta["position"] == {"deployment": 2, "chunk": 1}
    assert meta["config"] == config
    assert meta["extra"] == {"returns": [1.5, 2.5]}
    assert int(restored.env_steps) == 1234


def test_keeps_latest_and_restores_a_given_step(setup, tmp_path):
    _, _, state, abstract = setup
    ck = Checkpointer(tmp_path / "ck", max_to_keep=2)
    for step in range(1, 5):
        ck.save(step, state.replace(env_steps=jnp.int32(step)), position={"step": step})
    assert ck.steps() == [3, 4]
    assert ck.latest_step() == 4
    restored, meta = ck.restore(abstract, step=3)
    assert int(restored.env_steps) == 3 and meta["position"] == {"step": 3}
    with pytest.raises(CheckpointError, match="no checkpoint step 1"):
        ck.restore(abstract, step=1)
    ck.close()
    # A new manager on the same folder sees the same checkpoints.
    assert Checkpointer(tmp_path / "ck").latest_step() == 4


def test_empty_directory_and_bad_arguments(setup, tmp_path):
    _, _, state, abstract = setup
    ck = Checkpointer(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        ck.restore(abstract)
    with pytest.raises(ValueError, match="step must be a non-negative int"):
        ck.save(-1, state)
    with pytest.raises(TypeError):
        ck.save(1, state, extra={"x": object()})  # not JSON-able: refused before writing
    assert ck.steps() == []
    with pytest.raises(ValueError, match="max_to_keep"):
        Checkpointer(tmp_path / "x", max_to_keep=0)


def test_mismatched_config_names_leaves_and_fields(setup, tmp_path):
    cfg, _, state, _ = setup
    ck = Checkpointer(tmp_path / "ck")
    ck.save(1, state, config=json.loads(cfg.to_json()))
    other = _cfg("deploy.batch_size=800", "dynamics.hidden_sizes=(16, 16)")
    other_static, _ = config_lib.split(other)
    abstract_other = jax.eval_shape(make_phases(other_static).init, jax.random.key(0))
    with pytest.raises(CheckpointError) as e:
        ck.restore(abstract_other, expected_config=json.loads(other.to_json()))
    msg = str(e.value)
    assert ".buffer.data.obs" in msg and "float32[800,4]" in msg and "float32[1600,4]" in msg
    assert "deploy.batch_size: 400 -> 800" in msg
    assert "dynamics.hidden_sizes: [32, 32] -> [16, 16]" in msg


def test_corrupt_checkpoints_raise_checkpoint_error(setup, tmp_path):
    _, _, state, abstract = setup
    ck = Checkpointer(tmp_path / "ck")
    ck.save(1, state)
    ck.save(2, state)
    step_dir = pathlib.Path(ck.directory) / "1"
    for f in (step_dir / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        ck.restore(abstract, step=1)
    meta_dir = pathlib.Path(ck.directory) / "2" / "meta"
    for f in meta_dir.rglob("metadata"):
        f.write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        ck.restore(abstract, step=2)


def test_leaf_specs_and_config_diff():
    tree = {"a": jnp.zeros((2, 3)), "k": jax.random.key(0)}
    specs = leaf_specs(tree)
    assert specs == {"['a']": "float32[2,3]", "['k']": "key<fry>[]"}
    assert leaf_specs(jax.eval_shape(lambda: tree)) == specs
    assert config_diff({"a": {"b": (1, 2)}, "c": 1}, {"a": {"b": [1, 2]}, "c": 2}) == ["c: 1 -> 2"]


def _flip_bytes(step_dir: pathlib.Path, n: int = 64) -> None:
    """Flips ``n`` bytes in the middle of the largest array-data file of a checkpoint."""
    files = [f for f in (step_dir / "state").rglob("*") if f.is_file() and f.parent.name == "d"]
    f = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    f.write_bytes(bytes(data))


def test_flipped_bytes_fail_the_checksum_and_resume_takes_the_newest_intact(setup, tmp_path):
    from bremen_jax.run.checkpoint import DamagedCheckpointError

    _, _, state, abstract = setup
    ck = Checkpointer(tmp_path / "ck", max_to_keep=3)
    ck.save(1, state)
    ck.save(2, state.replace(env_steps=jnp.int32(99)))
    ck.save(3, state.replace(env_steps=jnp.int32(7)))
    _flip_bytes(pathlib.Path(ck.directory) / "3")
    with pytest.raises(CheckpointError, match="checkpoint .*3 is (damaged|corrupt)"):
        ck.restore(abstract, step=3)
    restored, meta, skipped = ck.restore_intact(abstract)
    assert int(restored.env_steps) == 99 and len(skipped) == 1 and "/3 is" in skipped[0]
    assert ck.steps() == [1, 2]  # the damaged one was moved aside, not deleted
    assert [p.name.startswith("damaged-3-") for p in pathlib.Path(ck.directory).iterdir()
            if not p.name.isdigit()] == [True]
    _flip_bytes(pathlib.Path(ck.directory) / "2")
    _flip_bytes(pathlib.Path(ck.directory) / "1")
    with pytest.raises(DamagedCheckpointError, match="no intact checkpoint"):
        ck.restore_intact(abstract)
    assert ck.steps() == [1, 2]  # a refusal moves nothing
    ck.close()


def test_a_failed_saves_tmp_folder_recreated_late_is_removed_too(tmp_path):
    """After a failed save orbax's writer threads may recreate ``<step>.orbax-checkpoint-tmp``
    after it was removed (seen on a loaded CPU): the removal waits until the folder has stayed
    gone for its quiet window, and ``close`` sweeps once more."""
    import threading
    import time

    ck = Checkpointer(tmp_path / "ck")
    tmp = ck.directory / "5.orbax-checkpoint-tmp-123"
    tmp.mkdir()
    (tmp / "part").write_bytes(b"x" * 100)
    recreated = threading.Event()

    def late_writer():  # waits for the first removal, then writes the folder again
        while tmp.exists():
            time.sleep(0.01)
        time.sleep(0.2)
        (tmp / "late").mkdir(parents=True)
        recreated.set()

    thread = threading.Thread(target=late_writer)
    thread.start()
    ck._remove_partial(5)
    thread.join()
    assert recreated.is_set() and not tmp.exists()
    # Written after the removal ended: close() after a failed save removes it.
    tmp.mkdir()
    ck._failed = True
    ck.close()
    assert not list(ck.directory.glob("*.orbax-checkpoint-tmp*"))
