"""Tests for bremen_jax.data.dataset: round trip, atomic writes, and every kind of damage."""

import json
import os
import pathlib
import types

import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.data import dataset as ds
from bremen_jax.types import Transition

N, OBS, ACT = 10, 3, 2


def make_arrays(n: int = N) -> dict:
    rng = np.random.default_rng(0)
    done = np.zeros(n, np.float32)
    done[n - 1:] = 1.0
    return {
        "obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32),
        "reward": np.arange(n, dtype=np.float32),
        "next_obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "done": done,
        "truncation": np.zeros(n, np.float32),
    }


def make_meta(arrays: dict) -> dict:
    return {
        "format": ds.FORMAT, "format_version": 1, "task": "halfcheetah",
        "obs_dim": OBS, "act_dim": ACT, "size": len(arrays["reward"]),
        "behavior_policy": "random", "created": "2024-01-01T00:00:00+00:00",
        "bremen_jax_version": "0.1.0", "sha256": ds.compute_checksum(arrays),
    }


def write_raw(path: pathlib.Path, arrays: dict, meta, metadata_text=None) -> pathlib.Path:
    """Writes an archive directly, bypassing save_dataset's validation."""
    members = dict(arrays)
    if meta is not None or metadata_text is not None:
        text = metadata_text if metadata_text is not None else json.dumps(meta)
        members["metadata_json"] = np.array(text)
    with open(path, "wb") as f:
        np.savez(f, **members)
    return path


# ----------------------------------------------------------------------------- round trip


def test_round_trip_arrays_and_metadata(tmp_path):
    arrays = make_arrays()
    trans = Transition(**{k: jnp.asarray(v) for k, v in arrays.items()})  # jax leaves
    path = ds.save_dataset(tmp_path / "d.npz", trans,
                           {"task": "halfcheetah", "behavior_policy": {"kind": "bremen", "d": 2},
                            "seed": np.int64(7), "note": "hi"})
    assert path == tmp_path / "d.npz"
    loaded, meta = ds.load_dataset(path, task="halfcheetah")
    for name in ds.ARRAY_FIELDS:
        leaf = getattr(loaded, name)
        assert isinstance(leaf, np.ndarray) and leaf.dtype == np.float32
        np.testing.assert_array_equal(leaf, arrays[name])
    assert meta["format"] == "bremen_jax.dataset" and meta["format_version"] == 1
    assert (meta["task"], meta["obs_dim"], meta["act_dim"], meta["size"]) == ("halfcheetah", 3, 2, 10)
    assert meta["behavior_policy"] == {"kind": "bremen", "d": 2}
    assert meta["seed"] == 7 and meta["note"] == "hi"
    assert meta["sha256"] == ds.compute_checksum(arrays)
    assert meta["bremen_jax_version"] and meta["created"].endswith("+00:00")
    assert ds.dataset_info(path) == meta
    # Metadata returned by load can be passed back unchanged (created is kept).
    again = ds.save_dataset(tmp_path / "e.npz", loaded, meta)
    assert ds.load_dataset(again)[1] == meta


def test_save_casts_float64_and_bool_to_float32(tmp_path):
    arrays = make_arrays()
    arrays64 = {k: v.astype(np.float64) for k, v in arrays.items()}
    arrays64["done"] = arrays["done"].astype(bool)
    path = ds.save_dataset(tmp_path / "d.npz", arrays64, {"task": "hopper"})
    loaded, _ = ds.load_dataset(path)
    assert loaded.obs.dtype == np.float32 and loaded.done.dtype == np.float32
    np.testing.assert_array_equal(loaded.done, arrays["done"])


def test_load_accepts_float64_file(tmp_path):
    arrays = make_arrays()
    raw = {k: v.astype(np.float64) for k, v in arrays.items()}
    path = write_raw(tmp_path / "d.npz", raw, make_meta(arrays))
    loaded, _ = ds.load_dataset(path)
    assert loaded.reward.dtype == np.float32
    np.testing.assert_array_equal(loaded.obs, arrays["obs"])


def test_task_like_object(tmp_path):
    path = ds.save_dataset(tmp_path / "d.npz", make_arrays(), {"task": "halfcheetah"})
    ok = types.SimpleNamespace(name="halfcheetah", obs_size=OBS, action_size=ACT)
    ds.load_dataset(path, task=ok)
    with pytest.raises(TypeError, match="task must be a task name"):
        ds.load_dataset(path, task=3)


# ----------------------------------------------------------------------------- writing


def test_refuses_to_overwrite(tmp_path):
    path = ds.save_dataset(tmp_path / "d.npz", make_arrays(), {"task": "a"})
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=str(path)):
        ds.save_dataset(path, make_arrays(5), {"task": "b"})
    assert path.read_bytes() == before
    ds.save_dataset(path, make_arrays(5), {"task": "b"}, overwrite=True)
    assert ds.dataset_info(path)["task"] == "b" and ds.dataset_info(path)["size"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_file_mode_follows_umask(tmp_path):
    path = ds.save_dataset(tmp_path / "d.npz", make_arrays(), {"task": "a"})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_write_leaves_no_temp_and_no_partial_file(tmp_path, monkeypatch, overwrite):
    path = tmp_path / "d.npz"
    if overwrite:
        ds.save_dataset(path, make_arrays(), {"task": "old"})
    before = path.read_bytes() if overwrite else None

    def crash(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(ds.os, "fsync", crash)  # after the archive bytes were written
    with pytest.raises(OSError, match="disk on fire"):
        ds.save_dataset(path, make_arrays(), {"task": "new"}, overwrite=overwrite)
    assert [p.name for p in tmp_path.iterdir()] == (["d.npz"] if overwrite else [])
    if overwrite:
        assert path.read_bytes() == before


def test_invalid_data_is_not_written(tmp_path):
    arrays = make_arrays()
    arrays["reward"][4] = np.nan
    with pytest.raises(ds.DatasetError, match=r"field 'reward' has a non-finite value \(nan\) at row 4"):
        ds.save_dataset(tmp_path / "d.npz", arrays, {"task": "a"})
    with pytest.raises(ds.DatasetError, match="missing the required key 'task'"):
        ds.save_dataset(tmp_path / "d.npz", make_arrays(), {})
    with pytest.raises(ds.DatasetError, match=r"metadata 'obs_dim' is 4; expected 3"):
        ds.save_dataset(tmp_path / "d.npz", make_arrays(), {"task": "a", "obs_dim": 4})
    with pytest.raises(ds.DatasetError, match="not JSON-serialisable"):
        ds.save_dataset(tmp_path / "d.npz", make_arrays(), {"task": "a", "f": object()})
    with pytest.raises(ds.DatasetError, match=r"field 'obs' has shape \(10,\); expected 2-D"):
        ds.save_dataset(tmp_path / "d.npz", dict(make_arrays(), obs=np.zeros(N)), {"task": "a"})
    with pytest.raises(ds.DatasetError, match="dataset is empty"):
        ds.save_dataset(tmp_path / "d.npz", make_arrays(0), {"task": "a"})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- damage table


def _set(d, key, value):
    d[key] = value


def _del(d, key):
    del d[key]


def _nan_reward(a, m):
    a["reward"][3] = np.nan


def _inf_next_obs(a, m):
    a["next_obs"][4, 1] = np.inf


def _bad_done(a, m):
    a["done"][2] = 0.5


def _empty(a, m):
    for k in list(a):
        a[k] = a[k][:0]
    m["size"] = 0
    m["sha256"] = ds.compute_checksum(a)


# name -> (mutate(arrays, meta) applied before writing, keep checksum of the mutated arrays,
#          regex of the expected message)
ARRAY_DAMAGE = {
    "missing array": (lambda a, m: _del(a, "reward"), False, r"missing array 'reward'"),
    "missing metadata key": (lambda a, m: _del(m, "obs_dim"), False,
                             r"missing the required key 'obs_dim'"),
    "wrong shape": (lambda a, m: _set(a, "action", np.zeros((N, ACT + 1), np.float32)), True,
                    r"field 'action' has shape \(10, 3\); expected \(N, act_dim\) = \(10, 2\)"),
    "wrong dtype": (lambda a, m: _set(a, "obs", a["obs"].astype(np.int32)), False,
                    r"field 'obs' has dtype int32; expected float32"),
    "string dtype": (lambda a, m: _set(a, "done", np.array(["x"] * N)), False,
                     r"field 'done' has dtype <U1; expected float32"),
    "nan": (_nan_reward, True, r"field 'reward' has a non-finite value \(nan\) at row 3"),
    "inf": (_inf_next_obs, True, r"field 'next_obs' has a non-finite value \(inf\) at row 4"),
    "empty": (_empty, True, r"dataset is empty \(0 transitions\); expected N >= 1"),
    "extra dims": (lambda a, m: _set(a, "reward", a["reward"][:, None]), True,
                   r"field 'reward' has shape \(10, 1\); expected \(N,\) = \(10,\)"),
    "mismatched N": (lambda a, m: _set(a, "action", a["action"][:-1]), True,
                     r"field 'action' has 9 rows; expected 10 \(the rows of 'obs'\)"),
    "obs_dim vs metadata": (lambda a, m: _set(m, "obs_dim", 4), False,
                            r"field 'obs' has shape \(10, 3\); expected \(N, obs_dim\) = \(10, 4\)"),
    "size vs metadata": (lambda a, m: _set(m, "size", 11), False,
                         r"metadata 'size' is 11; expected 10"),
    "not binary done": (_bad_done, True, r"field 'done' is 0.5 at row 2; expected only 0 or 1"),
    "bad checksum": (lambda a, m: a["obs"].__setitem__((5, 0), 123.0), False,
                     r"checksum mismatch: arrays hash to sha256 [0-9a-f]{64}; expected"),
    "malformed checksum": (lambda a, m: _set(m, "sha256", "abc"), False,
                           r"metadata 'sha256' is 'abc'; expected 64 lowercase hex"),
    "wrong format": (lambda a, m: _set(m, "format", "d4rl"), False,
                     r"metadata 'format' is 'd4rl'; expected 'bremen_jax.dataset'"),
    "future version": (lambda a, m: _set(m, "format_version", 2), False,
                       r"unsupported metadata 'format_version' 2; expected 1"),
    "bad task type": (lambda a, m: _set(m, "task", 5), False,
                      r"metadata 'task' is 5; expected a non-empty task name"),
    "negative act_dim": (lambda a, m: _set(m, "act_dim", -2), False,
                         r"metadata 'act_dim' is -2; expected an int >= 1"),
}


@pytest.mark.parametrize("kind", sorted(ARRAY_DAMAGE))
def test_damaged_arrays_or_metadata(tmp_path, kind):
    mutate, recompute_sha, pattern = ARRAY_DAMAGE[kind]
    arrays, meta = make_arrays(), None
    meta = make_meta(arrays)
    mutate(arrays, meta)
    if recompute_sha:
        try:
            meta["sha256"] = ds.compute_checksum(arrays)
        except (KeyError, ValueError):
            pass
    path = write_raw(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(ds.DatasetError, match=pattern) as info:
        ds.load_dataset(path)
    assert str(path) in str(info.value)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_data_byte(path):
    data = bytearray(path.read_bytes())
    at = data.find(make_arrays()["obs"].tobytes())
    assert at > 0
    data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))


def _not_zip(path):
    path.write_text("obs,action,reward\n1,2,3\n")


def _bad_json(path):
    write_raw(path, make_arrays(), None, metadata_text="{not json")


def _no_metadata(path):
    write_raw(path, make_arrays(), None)


def _metadata_not_object(path):
    write_raw(path, make_arrays(), None, metadata_text="[1, 2]")


FILE_DAMAGE = {
    "truncated": (_truncate, r"truncated or not a bremen_jax dataset"),
    "corrupt bytes": (_flip_data_byte, r"field 'obs': file is truncated or not a bremen_jax dataset"),
    "not a zip": (_not_zip, r"truncated or not a bremen_jax dataset"),
    "bad metadata json": (_bad_json, r"'metadata_json' is not valid JSON"),
    "no metadata": (_no_metadata, r"missing metadata 'metadata_json'"),
    "metadata not object": (_metadata_not_object, r"metadata must be a JSON object; got list"),
}


@pytest.mark.parametrize("kind", sorted(FILE_DAMAGE))
def test_damaged_files(tmp_path, kind):
    damage, pattern = FILE_DAMAGE[kind]
    path = tmp_path / "bad.npz"
    ds.save_dataset(path, make_arrays(), {"task": "halfcheetah"})
    damage(path)
    with pytest.raises(ds.DatasetError, match=pattern) as info:
        ds.load_dataset(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("task, pattern", [
    ("hopper", r"metadata 'task' is 'halfcheetah'; expected 'hopper'"),
    (types.SimpleNamespace(name="halfcheetah", obs_size=17, action_size=ACT),
     r"metadata 'obs_dim' is 3; expected 17 for task 'halfcheetah'"),
    (types.SimpleNamespace(name="halfcheetah", obs_size=OBS, action_size=6),
     r"metadata 'act_dim' is 2; expected 6 for task 'halfcheetah'"),
])
def test_wrong_task(tmp_path, task, pattern):
    path = ds.save_dataset(tmp_path / "d.npz", make_arrays(), {"task": "halfcheetah"})
    with pytest.raises(ds.DatasetError, match=pattern):
        ds.load_dataset(path, task=task)


def test_missing_file(tmp_path):
    with pytest.raises(ds.DatasetNotFoundError, match="no such dataset file"):
        ds.load_dataset(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        ds.dataset_info(tmp_path / "nope.npz")
    with pytest.raises(ds.DatasetError, match="not a regular file"):
        ds.load_dataset(tmp_path)


def test_dataset_info_checks_headers_not_values(tmp_path):
    arrays = make_arrays()
    arrays["reward"][0] = np.nan
    path = write_raw(tmp_path / "nan.npz", arrays, make_meta(arrays))
    assert ds.dataset_info(path)["size"] == N  # values are load_dataset's job
    arrays = make_arrays()
    arrays["reward"] = arrays["reward"][:, None]
    path = write_raw(tmp_path / "shape.npz", arrays, make_meta(make_arrays()))
    with pytest.raises(ds.DatasetError, match=r"field 'reward' has shape \(10, 1\)"):
        ds.dataset_info(path)
