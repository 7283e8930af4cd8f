"""``collect_dataset`` (``bremen collect``): levels, mixtures, metadata round trip, flag errors.

The behaviour-policy loaders are replaced by fakes with fixed linear policies (one shared policy
function, so every collection here reuses one compiled inverted_pendulum collector).
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax.datasets import behavior_policies as bp
from bremen_jax.datasets import make, mixtures, run_policy
from bremen_jax.data.dataset import load_dataset

TASK = "inverted_pendulum"
KW = dict(num_envs=4, backend=None, episode_length=30)  # backend from the behaviour's meta


def linear_policy(params, obs, key):
    del key
    return jnp.tanh(obs @ params)


def weights(scale):
    return jnp.array([[0.3], [1.0], [0.2], [0.4]], jnp.float32) * scale


def behavior(level, scale, mean_return):
    return types.SimpleNamespace(task=TASK, level=level, policy_fn=linear_policy,
                                 params=weights(scale), mean_return=mean_return,
                                 meta={"backend": "positional"})


@pytest.fixture(autouse=True)
def fake_behaviors(monkeypatch):
    levels = {"medium": behavior("medium", 0.5, 12.0), "expert": behavior("expert", 2.0, 28.0)}

    def load_behavior(task, level):
        if task != TASK or level not in levels:
            raise ValueError(f"no behaviour {task}/{level}")
        return levels[level]

    monkeypatch.setattr(bp, "load_behavior", load_behavior)
    monkeypatch.setattr(bp, "load_snapshots", lambda task, up_to="medium": [
        behavior(f"s{i}", s, r) for i, (s, r) in enumerate([(0.0, 6.0), (0.2, 9.0),
                                                             (0.5, 12.0)])])
    monkeypatch.setattr(bp, "reference_returns", lambda task: {TASK: (5.0, 30.0)}[task])


def policy_actions(obs, scale):
    return np.asarray(jax.vmap(linear_policy, in_axes=(None, 0, None))(weights(scale), obs, None))


def test_eps1_metadata_round_trip(tmp_path):
    info = make.collect_dataset(TASK, "medium", "eps1", 600, tmp_path / "m.npz", seed=7, **KW)
    tr, meta = load_dataset(tmp_path / "m.npz", task=TASK)
    assert tr.obs.shape == (600, 4) and meta["size"] == 600
    for key in ("policy", "noise", "seed", "behavior_return", "reference_returns",
                "behavior_normalized_score", "components", "backend"):
        assert meta[key] == info[key], key
    assert (meta["policy"], meta["noise"], meta["seed"]) == ("medium", "eps1", 7)
    assert meta["backend"] == "positional" and meta["episode_length"] == 30
    assert meta["behavior_return"] == 12.0
    assert meta["reference_returns"] == {"random": 5.0, "expert": 30.0}
    assert meta["behavior_normalized_score"] == pytest.approx(100 * (12 - 5) / 25)
    if meta["dataset_return"] is not None:
        assert meta["dataset_normalized_score"] == pytest.approx(
            4 * (meta["dataset_return"] - 5))
    ids = mixtures.component_ids(meta["components"], 600)
    assert np.bincount(ids).tolist() == [120, 240, 240]
    np.testing.assert_allclose(tr.action[ids == 1], policy_actions(tr.obs, 0.5)[ids == 1],
                               atol=1e-6)
    assert meta["timing"]["collected_steps"] == 600 and meta["timing"]["steps_per_s"] > 0
    assert "total_s" in info["timing"]
    # same seed, same arguments -> identical file contents
    make.collect_dataset(TASK, "medium", "eps1", 600, tmp_path / "m2.npz", seed=7, **KW)
    _, meta2 = load_dataset(tmp_path / "m2.npz")
    assert meta2["sha256"] == meta["sha256"]


def test_medium_replay_equal_shares_in_order(tmp_path):
    make.collect_dataset(TASK, "medium-replay", None, 361, tmp_path / "r.npz", **KW)
    tr, meta = load_dataset(tmp_path / "r.npz")
    assert meta["noise"] == "pure" and meta["behavior_policy"]["kind"] == "d4rl"
    assert [(c["name"], c["count"]) for c in meta["components"]] == [
        ("s0", 120), ("s1", 120), ("s2", 121)]
    ids = mixtures.component_ids(meta["components"])
    for i, scale in enumerate((0.0, 0.2, 0.5)):
        np.testing.assert_allclose(tr.action[ids == i], policy_actions(tr.obs, scale)[ids == i],
                                   atol=1e-6)


def test_medium_expert_is_half_and_half(tmp_path):
    make.collect_dataset(TASK, "medium-expert", "pure", 240, tmp_path / "me.npz", **KW)
    tr, meta = load_dataset(tmp_path / "me.npz")
    assert [(c["name"], c["count"]) for c in meta["components"]] == [("medium", 120),
                                                                      ("expert", 120)]
    assert meta["behavior_return"] == pytest.approx(20.0)  # mean of 12 and 28
    np.testing.assert_allclose(tr.action[120:], policy_actions(tr.obs[120:], 2.0), atol=1e-6)


def test_run_directory_policy(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()

    def fake_load_run_policy(workdir):
        assert str(workdir) == str(run)
        return (types.SimpleNamespace(name=TASK), types.SimpleNamespace(
            act_deterministic=linear_policy), weights(1.0), {"backend": "positional"})

    monkeypatch.setattr(run_policy, "load_run_policy", fake_load_run_policy)
    info = make.collect_dataset(TASK, str(run), None, 120, tmp_path / "run.npz", **KW)
    assert info["behavior_policy"] == {"kind": "run", "run_dir": str(run), "noise": "pure"}
    assert info["behavior_return"] == info["dataset_return"] is not None
    with pytest.raises(ValueError, match="the run trained task 'inverted_pendulum' but --task "
                                         "is 'hopper'"):
        make.collect_dataset("hopper", str(run), None, 120, tmp_path / "h.npz", **KW)


@pytest.mark.parametrize("args, match", [
    (("nope", "medium", "pure", 10), "--task must be one of"),
    ((TASK, "medium", "pure", 0), "--size must be an int >= 1"),
    ((TASK, "medium", "eps9", 10), "--noise must be one of pure, eps1"),
    ((TASK, "random", "eps1", 10), "--noise eps1 needs a policy to perturb"),
    ((TASK, "medium-replay", "gaussian1", 10), "--noise 'gaussian1' cannot be used with "
                                               "--policy medium-replay"),
    ((TASK, "/no/such/run", "pure", 10), "--policy '/no/such/run' is neither a level"),
    ((TASK, "", "pure", 10), "--policy must be"),
])
def test_flag_errors(tmp_path, args, match):
    with pytest.raises(ValueError, match=match):
        make.collect_dataset(*args, tmp_path / "x.npz", **KW)
    assert not (tmp_path / "x.npz").exists()


def test_never_overwrites(tmp_path):
    out = tmp_path / "exists.npz"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--out .* already exists"):
        make.collect_dataset(TASK, "medium", "pure", 10, out, **KW)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="--num-envs must be an int >= 1"):
        make.collect_dataset(TASK, "medium", "pure", 10, tmp_path / "y.npz", num_envs=0)


def test_sources_share_policy_fn_per_network_and_drop_nan_returns():
    def fn(i):
        return lambda params, obs, key: linear_policy(params, obs, key) * i

    net_a, net_b = {"hidden": [32, 32]}, {"hidden": [64]}
    bs = [types.SimpleNamespace(policy_fn=fn(i), params=i, mean_return=r, meta=m)
          for i, (r, m) in enumerate([(float("nan"), {}), (1.0, {"network": net_a}),
                                      (2.0, {"network": dict(net_a)}), (3.0, {"network": net_b})])]
    srcs = make._sources(bs, ["r", "a1", "a2", "b"])
    assert srcs[0].mean_return is None and srcs[1].mean_return == 1.0
    assert srcs[2].policy_fn is srcs[1].policy_fn is bs[1].policy_fn
    assert srcs[3].policy_fn is bs[3].policy_fn and srcs[0].policy_fn is bs[0].policy_fn
    assert [s.params for s in srcs] == [0, 1, 2, 3]


def test_collectors_of_keyed_behaviours_are_stored_and_unkeyed_ones_are_not(tmp_path,
                                                                             monkeypatch):
    """A behaviour with a ``key`` (what determines its policy function) collects through a
    stored program keyed by ``(task, backend, episode_length)``, that key and the layout; one
    without a key (a user's function object) is compiled per process, as before. Both compile
    as physics programs (``kind="env"``)."""
    seen = []
    real = mixtures.compile_cached

    def spy(key, fn, *args, **kw):
        seen.append((key, kw))
        return real(key, fn, *args, **kw)

    monkeypatch.setattr(mixtures, "compile_cached", spy)
    make.collect_dataset(TASK, "medium", "pure", 40, tmp_path / "a.npz", **KW)
    key, kw = seen[-1]
    assert kw["persist"] is False and kw["kind"] == "env" and key[2] is linear_policy
    keyed = behavior("medium", 0.5, 12.0)
    keyed.key = ("linear", 4)
    monkeypatch.setattr(bp, "load_behavior", lambda task, level: keyed)
    make.collect_dataset(TASK, "medium", "pure", 40, tmp_path / "b.npz", **KW)
    key, kw = seen[-1]
    assert kw["persist"] is True and kw["kind"] == "env"
    assert key == ("collect", (TASK, "positional", 30), ("linear", 4), 1, 40)  # column_layout(40, 4, 30)
    np.testing.assert_array_equal(load_dataset(tmp_path / "a.npz")[0].action,
                                  load_dataset(tmp_path / "b.npz")[0].action)


def test_run_policy_and_packaged_behaviours_carry_keys():
    from bremen_jax.envs.acting import uniform_random_policy
    from bremen_jax.models.policy import PolicyConfig, make_policy

    pol = make_policy(PolicyConfig(obs_dim=4, act_dim=1, hidden_sizes=(8,)))
    src = run_policy.run_policy_source(pol, None)
    assert src.key == ("bremen_policy", pol.cfg) and src.policy_fn == pol.act_deterministic
    assert run_policy.run_policy_source(types.SimpleNamespace(
        act_deterministic=linear_policy), None).key is None  # not the package's: by identity
    net = bp.PolicyNetwork(4, 1, (32, 32), "swish")
    assert bp.Behavior(TASK, "random", uniform_random_policy(1), None, 0.0, {}).key is None
    assert make._source(types.SimpleNamespace(
        policy_fn=linear_policy, params=None, mean_return=1.0,
        key=("brax_ppo", net.to_json())), "m").key == ("brax_ppo", net.to_json())


_STORE_SCRIPT = r"""
import hashlib, json, sys
import jax, numpy as np
from bremen_jax.data.dataset import load_dataset
from bremen_jax.datasets import make, mixtures as mx

jax.config.update("jax_compilation_cache_dir", sys.argv[1])
traces = []
real = mx.make_noisy_policy

def counting(policy_fn):
    noisy = real(policy_fn)

    def traced(*args):
        traces.append(1)
        return noisy(*args)
    return traced

mx.make_noisy_policy = counting
make.collect_dataset("inverted_pendulum", "random", "pure", 120, sys.argv[2], num_envs=4,
                     episode_length=30, backend="positional")
rows = load_dataset(sys.argv[2])[0]  # the transitions (the metadata holds timings)
digest = hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(rows)))
print(json.dumps({"traces": len(traces), "digest": digest.hexdigest()}))
"""


def test_second_collect_process_loads_the_stored_collector(tmp_path):
    """What ``bremen collect`` twice does: the second process (same task, behaviour, layout)
    loads the collector without tracing it and writes the same arrays."""
    import json
    import os
    import subprocess
    import sys

    out = []
    for name in ("first.npz", "second.npz"):
        r = subprocess.run([sys.executable, "-c", _STORE_SCRIPT, str(tmp_path / "cache"),
                            str(tmp_path / name)], env=dict(os.environ, JAX_PLATFORMS="cpu"),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert [o["traces"] for o in out] == [1, 0]
    assert out[0]["digest"] == out[1]["digest"]
