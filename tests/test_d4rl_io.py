"""D4RL HDF5 and Minari import/export: round trips on small files, hand-made layouts, errors."""

import json

import h5py
import numpy as np
import pytest

from bremen_jax.datasets import d4rl_io
from bremen_jax.data.dataset import DatasetError, load_dataset, save_dataset
from bremen_jax.types import Transition


def make_transitions(n=12, obs_dim=3, act_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    done = np.zeros(n, np.float32)
    done[4] = 1.0
    trunc = np.zeros(n, np.float32)
    trunc[9] = 1.0
    return Transition(obs=obs, action=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
                      reward=rng.normal(size=n).astype(np.float32),
                      next_obs=rng.normal(size=(n, obs_dim)).astype(np.float32),
                      done=done, truncation=trunc)


def assert_same(a, b):
    for name in ("obs", "action", "reward", "next_obs", "done", "truncation"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_export_import_round_trip(tmp_path):
    tr = make_transitions()
    meta = {"task": "halfcheetah", "policy": "medium", "noise": "eps1", "seed": 3,
            "components": [{"name": "pure", "start": 0, "stop": 12}]}
    path = d4rl_io.export_d4rl_hdf5(tr, tmp_path / "d.hdf5", meta)
    with h5py.File(path, "r") as f:
        assert f["terminals"].dtype == bool and f["timeouts"].dtype == bool
        assert f["observations"].dtype == np.float32 and f["rewards"].shape == (12,)
        assert f.attrs["policy"] == "medium" and f.attrs["seed"] == 3
    back, meta2 = d4rl_io.import_d4rl_hdf5(path)
    assert_same(back, tr)
    assert meta2["task"] == "halfcheetah" and meta2["components"] == meta["components"]
    assert meta2["derived_next_observations"] is False and meta2["dropped_rows"] == 0
    save_dataset(tmp_path / "d.npz", back, meta2)  # importable metadata is saveable as is
    loaded, saved = load_dataset(tmp_path / "d.npz", task="halfcheetah")
    assert_same(loaded, tr)
    assert saved["noise"] == "eps1"
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        d4rl_io.export_d4rl_hdf5(tr, path, meta)


def test_terminal_and_timeout_on_one_row_is_a_termination(tmp_path):
    tr = make_transitions(n=12)
    path = tmp_path / "both.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"], f["actions"] = tr.obs[:4], tr.action[:4]
        f["rewards"], f["next_observations"] = tr.reward[:4], tr.next_obs[:4]
        f["terminals"] = np.array([0, 1, 0, 0], bool)
        f["timeouts"] = np.array([0, 1, 1, 0], bool)
    back, _ = d4rl_io.import_d4rl_hdf5(path, task="hopper")
    np.testing.assert_array_equal(back.done, [0, 1, 0, 0])
    np.testing.assert_array_equal(back.truncation, [0, 0, 1, 0])


def test_derived_next_observations(tmp_path):
    # 7 rows: episode A = rows 0-2 (row 2 terminal), B = rows 3-4 (row 4 timeout), C = 5-6 (open)
    obs = np.arange(7, dtype=np.float64)[:, None] * np.ones((1, 2))  # float64 in, float32 out
    path = tmp_path / "v0.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.arange(7, dtype=np.float32)[:, None]
        f["rewards"] = np.arange(7, dtype=np.float32) * 10
        f["terminals"] = np.array([0, 0, 1, 0, 0, 0, 0], np.float32)
        f["timeouts"] = np.array([0, 0, 0, 0, 1, 0, 0], np.int64)
    tr, meta = d4rl_io.import_d4rl_hdf5(path, task="hopper")
    # kept rows 0, 1, 3, 5 (last step of each episode and the file's last row dropped)
    np.testing.assert_array_equal(tr.obs[:, 0], [0, 1, 3, 5])
    np.testing.assert_array_equal(tr.next_obs[:, 0], [1, 2, 4, 6])
    np.testing.assert_array_equal(tr.reward, [0, 10, 30, 50])
    np.testing.assert_array_equal(tr.done, [0, 0, 0, 0])
    np.testing.assert_array_equal(tr.truncation, [0, 1, 1, 1])
    assert tr.obs.dtype == np.float32
    assert meta["derived_next_observations"] and meta["dropped_rows"] == 3
    assert meta["source_rows"] == 7 and meta["task"] == "hopper"


def write_d4rl(path, n=5, **override):
    arrays = {"observations": np.zeros((n, 3), np.float32), "actions": np.zeros((n, 2), np.float32),
              "rewards": np.zeros(n, np.float32), "terminals": np.zeros(n, bool),
              "timeouts": np.zeros(n, bool), "next_observations": np.zeros((n, 3), np.float32)}
    arrays.update(override)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f[key] = value
    return path


@pytest.mark.parametrize("override, match", [
    ({"rewards": None}, "missing key 'rewards'; expected D4RL layout: observations"),
    ({"timeouts": None, "next_observations": None}, "missing key 'timeouts'"),
    ({"actions": np.zeros((4, 2), np.float32)}, "'actions' has 4 rows but 'observations' has 5"),
    ({"rewards": np.zeros((5, 1), np.float32)}, r"'rewards' has shape \(5, 1\) \(rank 2\); "
                                                "expected rank 1"),
    ({"observations": np.zeros(5, np.float32)}, "'observations' has shape .* expected rank 2"),
    ({"observations": np.full((5, 3), np.nan, np.float32)}, "'observations' has a non-finite "
                                                            "value at row 0"),
    ({"actions": np.zeros((5, 2), np.int32)}, "'actions' has dtype int32; expected a floating"),
    ({"terminals": np.array([0, 2, 0, 0, 0])}, "'terminals' is 2 at row 1; expected only 0/1"),
    ({"next_observations": np.zeros((5, 4), np.float32)}, "'next_observations' has width 4"),
])
def test_malformed_d4rl_files(tmp_path, override, match):
    path = write_d4rl(tmp_path / "bad.hdf5", **override)
    with pytest.raises(DatasetError, match=match):
        d4rl_io.import_d4rl_hdf5(path)


def test_not_hdf5_and_missing(tmp_path):
    (tmp_path / "x.hdf5").write_text("not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        d4rl_io.import_d4rl_hdf5(tmp_path / "x.hdf5")
    with pytest.raises(DatasetError, match="no such D4RL HDF5 file"):
        d4rl_io.import_d4rl_hdf5(tmp_path / "missing.hdf5")


def write_minari(root, episodes, metadata=None):
    data = root / "data"
    data.mkdir(parents=True)
    meta = {"dataset_id": "toy/test-v0", "total_episodes": len(episodes), "data_format": "hdf5",
            "ref_min_score": -1.0, "ref_max_score": 9.0, "total_steps":
                sum(len(e["rewards"]) for e in episodes)}
    meta.update(metadata or {})
    (data / "metadata.json").write_text(json.dumps(meta))
    with h5py.File(data / "main_data.hdf5", "w") as f:
        for i, ep in enumerate(episodes):
            g = f.create_group(f"episode_{i}")
            g.attrs["id"] = i
            for key, value in ep.items():
                g[key] = value
            g.create_group("infos")
    return root


def minari_episode(steps, start, terminated):
    obs = (start + np.arange(steps + 1, dtype=np.float32))[:, None] * np.ones((1, 2), np.float32)
    term = np.zeros(steps, bool)
    trunc = np.zeros(steps, bool)
    (term if terminated else trunc)[-1] = True
    return {"observations": obs, "actions": np.full((steps, 1), 0.5, np.float32),
            "rewards": np.arange(steps, dtype=np.float64), "terminations": term,
            "truncations": trunc}


def test_minari_round_trip(tmp_path):
    eps = [minari_episode(3, 0, True), minari_episode(2, 100, False)]
    root = write_minari(tmp_path / "toy-test-v0", eps)
    tr, meta = d4rl_io.import_minari(root, task="toy")
    np.testing.assert_array_equal(tr.obs[:, 0], [0, 1, 2, 100, 101])
    np.testing.assert_array_equal(tr.next_obs[:, 0], [1, 2, 3, 101, 102])
    np.testing.assert_array_equal(tr.reward, [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(tr.done, [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(tr.truncation, [0, 0, 0, 0, 1])
    assert tr.action.shape == (5, 1) and tr.reward.dtype == np.float32
    assert meta["num_episodes"] == 2 and meta["reference_returns"] == {"random": -1.0,
                                                                       "expert": 9.0}
    assert meta["minari"]["dataset_id"] == "toy/test-v0"
    tr2, _ = d4rl_io.import_minari(root / "data")  # the data directory itself works too
    assert_same(tr, tr2)
    out = d4rl_io.import_dataset(root, tmp_path / "toy.npz", task="toy")
    assert out["size"] == 5 and out["source_format"] == "minari_hdf5"
    loaded, _ = load_dataset(tmp_path / "toy.npz", task="toy")
    assert_same(loaded, tr)


def test_minari_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such directory"):
        d4rl_io.import_minari(tmp_path / "nope")
    bad = minari_episode(3, 0, True)
    bad["actions"] = bad["actions"][:2]
    root = write_minari(tmp_path / "a", [bad])
    with pytest.raises(DatasetError, match="episode_0: 'actions' has 2 rows but 'observations' "
                                           "has 4; expected T = 3"):
        d4rl_io.import_minari(root)
    root = write_minari(tmp_path / "b", [minari_episode(3, 0, True)], {"total_episodes": 2})
    with pytest.raises(DatasetError, match="expected episode_0..episode_1"):
        d4rl_io.import_minari(root)
    root = write_minari(tmp_path / "c", [minari_episode(3, 0, True)], {"data_format": "arrow"})
    with pytest.raises(DatasetError, match="data_format is 'arrow'; only 'hdf5'"):
        d4rl_io.import_minari(root)
    root = write_minari(tmp_path / "d", [])
    with pytest.raises(DatasetError, match="no episode_<i> groups"):
        d4rl_io.import_minari(root)
    root = tmp_path / "e"
    write_minari(root, [minari_episode(2, 0, True)])
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        del f["episode_0/observations"]
        f.create_group("episode_0/observations").create_dataset("pos", data=np.zeros((3, 1)))
    with pytest.raises(DatasetError, match="'observations' is a Group, not an array"):
        d4rl_io.import_minari(root)
    (tmp_path / "f" / "data").mkdir(parents=True)
    (tmp_path / "f" / "data" / "main_data.hdf5").write_bytes(b"")
    with pytest.raises(DatasetError, match="metadata.json: missing"):
        d4rl_io.import_minari(tmp_path / "f")
