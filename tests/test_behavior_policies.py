"""Behaviour policies trained with Brax PPO: save/load, levels, references, a small training run."""

import json
import math

import brax.envs
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.training.acme import running_statistics
from brax.training.agents.ppo import networks as ppo_networks

from bremen_jax.datasets import behavior_policies as bp
from bremen_jax.datasets import behavior_training as bt
from bremen_jax.datasets import scores
from bremen_jax.envs import make_task
from experiments import train_behavior as script

NET = bp.PolicyNetwork(obs_size=4, action_size=2, hidden_layer_sizes=(8, 8))


def _random_params(network: bp.PolicyNetwork, seed: int) -> bp.PPOPolicyParams:
    key_init, key_mean, key_std = jax.random.split(jax.random.key(seed), 3)
    policy = network.make_networks().policy_network.init(key_init)
    return bp.PPOPolicyParams(
        obs_mean=jax.random.normal(key_mean, (network.obs_size,)),
        obs_std=jnp.exp(jax.random.normal(key_std, (network.obs_size,))), policy=policy)


def _fake_artifacts(directory, task="inverted_pendulum", num=4, medium=1):
    """Hand-made artefacts with the layout train_behavior writes (no training)."""
    task_obj = make_task(task, backend="positional")
    net = bp.PolicyNetwork(task_obj.obs_size, task_obj.action_size, (8, 8))
    entries = []
    for i in range(num):
        bp.save_params(directory / task / f"snapshot_{i:02d}.npz", _random_params(net, i))
        entries.append({"snapshot": i, "file": f"snapshot_{i:02d}.npz", "step": 100 * i,
                        "mean_return": 10.0 * (i + 1)})
    levels = {"medium": dict(entries[medium], file="medium.npz"),
              "expert": dict(entries[-1], file="expert.npz")}
    bp.save_params(directory / task / "medium.npz", _random_params(net, medium))
    bp.save_params(directory / task / "expert.npz", _random_params(net, num - 1))
    manifest = {"task": task, "backend": "positional", "network": net.to_json(),
                "eval": {"episodes": 3}, "levels": levels, "snapshots": entries}
    (directory / task / "manifest.json").write_text(json.dumps(manifest))
    (directory / "references.json").write_text(json.dumps(
        {task: {"random": 5.0, "expert": 40.0, "backend": "positional", "episodes": 3,
                "source": "test"}}))
    return net


def test_policy_fn_is_brax_deterministic_inference_clipped():
    params = _random_params(NET, 0)
    obs = jax.random.normal(jax.random.key(1), (5, NET.obs_size)) * 3.0
    policy_fn = bp.make_ppo_policy_fn(NET)
    action = policy_fn(params, obs, jax.random.key(2))
    chex.assert_shape(action, (5, NET.action_size))
    chex.assert_tree_all_finite(action)
    assert np.all(np.abs(action) <= 1.0)
    # Brax's own inference on the same params: tanh(mean) of the MLP on normalised observations.
    make_policy = ppo_networks.make_inference_fn(NET.make_networks())
    mean_std = running_statistics.NestedMeanStd(mean=params.obs_mean, std=params.obs_std)
    expected, _ = make_policy((mean_std, params.policy), deterministic=True)(obs, None)
    np.testing.assert_allclose(action, expected, rtol=1e-6, atol=1e-6)
    # By hand for the first layer's input: the normaliser is (obs - mean) / std.
    logits = NET.make_networks().policy_network.apply(mean_std, params.policy, obs)
    np.testing.assert_allclose(action, jnp.tanh(logits[:, :NET.action_size]), atol=1e-6)
    # The key is ignored (deterministic) and jit agrees with eager.
    np.testing.assert_array_equal(action, policy_fn(params, obs, jax.random.key(3)))
    np.testing.assert_allclose(jax.jit(policy_fn)(params, obs, jax.random.key(2)), action,
                               rtol=1e-6, atol=1e-6)


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    params = _random_params(NET, 3)
    bp.save_params(tmp_path / "p.npz", params)
    loaded = bp.load_params(tmp_path / "p.npz", NET)
    chex.assert_trees_all_equal(jax.device_get(loaded), jax.device_get(params))
    policy_fn = bp.make_ppo_policy_fn(NET)
    obs = jax.random.normal(jax.random.key(4), (7, NET.obs_size))
    np.testing.assert_array_equal(policy_fn(loaded, obs, jax.random.key(0)),
                                  policy_fn(params, obs, jax.random.key(0)))
    with np.load(tmp_path / "p.npz") as data:
        assert set(data.files) >= {"obs_mean", "obs_std", "policy/params/hidden_0/kernel"}


def test_load_params_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bp.load_params(tmp_path / "missing.npz", NET)
    bp.save_params(tmp_path / "p.npz", _random_params(NET, 0))
    other = bp.PolicyNetwork(obs_size=4, action_size=2, hidden_layer_sizes=(16, 8))
    with pytest.raises(ValueError, match="do not match the policy network"):
        bp.load_params(tmp_path / "p.npz", other)
    with pytest.raises(ValueError, match="activation"):
        bp.PolicyNetwork(4, 2, activation="gelu9")
    with pytest.raises(ValueError, match="obs_size"):
        bp.PolicyNetwork(0, 2)


def test_choose_medium_hand_computed():
    # random -100, expert 200 -> normalised (R + 100) / 300; target 5/12 ~ 0.4167, i.e. R = 25.
    assert bt.choose_medium([-90, 0, 30, 120, 200], -100.0, 200.0) == 2
    assert bt.choose_medium([-90, 100, 200], -100.0, 200.0) == 1  # 0.667 beats 0.033
    assert bt.choose_medium([5.0, 5.0, 9.0], 0.0, 9.0) == 0  # tie -> earliest
    with pytest.raises(ValueError, match="at least 2"):
        bt.choose_medium([1.0], 0.0, 1.0)
    # the one score formula (bremen_jax.datasets.scores) on the same references
    assert scores.normalized_score("x", 25.0, references=(-100.0, 200.0)) == pytest.approx(
        100 * 125 / 300)
    with pytest.raises(ValueError, match="R_expert=2.0 must be greater than R_random=2.0"):
        scores.normalized_score("x", 1.0, references=(2.0, 2.0))


def test_levels_snapshots_and_references_from_artifacts(tmp_path):
    net = _fake_artifacts(tmp_path)
    expert = bp.load_behavior("inverted_pendulum", "expert", directory=tmp_path)
    assert (expert.task, expert.level, expert.mean_return) == ("inverted_pendulum", "expert", 40.0)
    obs = jnp.zeros((net.obs_size,))
    chex.assert_shape(expert.policy_fn(expert.params, obs, jax.random.key(0)), (net.action_size,))
    np.testing.assert_array_equal(  # expert.npz holds the params of the last snapshot
        expert.policy_fn(expert.params, obs + 0.3, None),
        expert.policy_fn(_random_params(net, 3), obs + 0.3, None))
    random = bp.load_behavior("inverted_pendulum", "random", directory=tmp_path)
    assert random.params is None and random.mean_return == 5.0
    a = random.policy_fn(None, obs, jax.random.key(0))
    chex.assert_shape(a, (net.action_size,))
    assert np.all(np.abs(a) <= 1.0)
    assert bp.reference_returns("inverted_pendulum", directory=tmp_path) == (5.0, 40.0)
    snaps = bp.load_snapshots("inverted_pendulum", directory=tmp_path)
    assert [b.level for b in snaps] == ["random", "snapshot_00", "snapshot_01"]
    assert [b.meta.get("step") for b in snaps[1:]] == [0, 100]
    assert len(bp.load_snapshots("inverted_pendulum", "expert", directory=tmp_path)) == 5
    assert len(bp.load_snapshots("inverted_pendulum", "random", directory=tmp_path)) == 1


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        bp.load_behavior("nope", "expert")
    with pytest.raises(ValueError, match="unknown level 'pro'.*random, medium, expert"):
        bp.load_behavior("inverted_pendulum", "pro")
    with pytest.raises(ValueError, match="unknown level"):
        bp.load_snapshots("inverted_pendulum", up_to="replay")
    with pytest.raises(FileNotFoundError, match="manifest.json does not exist"):
        bp.load_behavior("hopper", "expert", directory=tmp_path)
    with pytest.raises(ValueError, match="no reference returns for task 'hopper'"):
        bp.reference_returns("hopper", directory=tmp_path)
    assert math.isnan(bp.load_behavior("hopper", "random", directory=tmp_path).mean_return)
    _fake_artifacts(tmp_path)
    (tmp_path / "inverted_pendulum" / "medium.npz").unlink()
    with pytest.raises(FileNotFoundError, match="medium.npz does not exist"):
        bp.load_behavior("inverted_pendulum", "medium", directory=tmp_path)
    with pytest.raises(ValueError, match="unknown or reserved ppo_kwargs \\['lr'\\]"):
        bt.train_behavior("inverted_pendulum", num_timesteps=10, out_dir=tmp_path, lr=1e-3)
    with pytest.raises(ValueError, match="num_timesteps must be a positive int"):
        bt.train_behavior("inverted_pendulum", num_timesteps=0, out_dir=tmp_path)


def test_shipped_behaviors_load_with_matching_shapes():
    refs = bp.read_references()
    assert "inverted_pendulum" in refs, "shipped references.json lacks inverted_pendulum"
    for task, ref in refs.items():
        task_obj = make_task(task, backend=ref["backend"])
        r_random, r_expert = bp.reference_returns(task)
        assert r_expert > r_random
        for level in bp.LEVELS:
            b = bp.load_behavior(task, level)
            action = b.policy_fn(b.params, jnp.zeros((task_obj.obs_size,)), jax.random.key(0))
            chex.assert_shape(action, (task_obj.action_size,))
            chex.assert_tree_all_finite(action)
            assert math.isfinite(b.mean_return)
        manifest = bp.read_manifest(task)
        assert manifest["backend"] == ref["backend"] == bp.TASK_BACKENDS[task]
        assert bp.load_behavior(task, "expert").mean_return == pytest.approx(r_expert, abs=1e-3)


def test_ppo_training_wrap_ends_episodes_on_task_done():
    """ppo.train wraps with brax.envs.training.wrap: the TaskEnv's done must end episodes."""
    task = make_task("inverted_pendulum", backend="positional")
    env = brax.envs.training.wrap(task.env, episode_length=30)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)  # raw uint32 keys, as ppo.train passes
    state = jax.jit(env.reset)(keys)
    step = jax.jit(env.step)
    push = jnp.array([[1.0], [0.0]])  # env 0 is pushed over; env 1 stays up until the time limit
    dones, obs = [], []
    for _ in range(30):
        nxt = step(state, push)
        dones.append(np.asarray(nxt.done))
        obs.append(np.asarray(nxt.obs))
        state = nxt
    dones, obs = np.stack(dones), np.stack(obs)
    first = int(np.argmax(dones[:, 0]))
    assert dones[first, 0] == 1.0 and first < 29  # the task's termination (|angle| > 0.2) fired
    assert np.all(dones[:29, 1] == 0.0) and dones[29, 1] == 1.0  # time limit
    # AutoResetWrapper: the step that ends an episode already returns the initial observation.
    reset_obs = np.asarray(jax.jit(env.reset)(keys).obs)
    np.testing.assert_allclose(obs[first, 0], reset_obs[0], atol=1e-6)
    assert abs(obs[first - 1, 0, 1]) <= 0.2 + 1e-6


def test_script_parses_overrides():
    assert script.parse_ppo_overrides(["learning_rate=1e-3", "policy_hidden_layer_sizes=[64,64]",
                                       "normalize_observations=false", "x=abc"]) == {
        "learning_rate": 1e-3, "policy_hidden_layer_sizes": (64, 64),
        "normalize_observations": False, "x": "abc"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        script.parse_ppo_overrides(["learning_rate"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("behaviors")
    report = bt.train_behavior("inverted_pendulum", num_timesteps=20_000, out_dir=out,
                               num_snapshots=3, eval_episodes=5, log=lambda _: None)
    return out, report


@pytest.mark.slow
def test_small_ppo_run_improves_over_random(trained):
    out, report = trained
    r = report["returns"]
    assert report["env_steps"] >= 20_000 and report["train_time_s"] > 0
    assert r["expert"] > 3.0 * r["random"] + 20.0, r  # uniform policy: ~20 steps before falling
    assert bp.reference_returns("inverted_pendulum", directory=out) == (r["random"], r["expert"])
    manifest = bp.read_manifest("inverted_pendulum", directory=out)
    assert manifest["backend"] == "positional" and len(manifest["snapshots"]) == 3
    assert manifest["snapshots"][0]["step"] == 0 and manifest["levels"]["expert"]["snapshot"] == 2
    # Loading the saved expert and evaluating it again reproduces the recorded return exactly
    # (deterministic policy, same evaluation key): nothing was lost in saving.
    expert = bp.load_behavior("inverted_pendulum", "expert", directory=out)
    task = make_task("inverted_pendulum", backend="positional")
    again = bt.evaluate_policies(task, expert.policy_fn, [expert.params], 5,
                                 jax.random.key(0 + 1_000_003))[0]
    assert again["mean"] == pytest.approx(expert.mean_return, abs=1e-3)
    medium = bp.load_behavior("inverted_pendulum", "medium", directory=out)
    assert medium.meta["snapshot"] in (0, 1)


def test_diverged_training_gets_a_clear_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """Brax PPO ends a diverged run with a bare AssertionError (its replication check compares
    the NaN state with itself): the user gets what happened and what to try instead."""
    from brax.training.agents.ppo import train as ppo_train

    def diverging(**kwargs):
        policy = {"params": {"w": jnp.full((2,), jnp.nan)}}
        norm = running_statistics.init_state(jnp.zeros((4,)))
        kwargs["policy_params_fn"](1024, None, (norm, policy, None))
        raise AssertionError(None)

    monkeypatch.setattr(ppo_train, "train", diverging)
    with pytest.raises(RuntimeError, match="training diverged.*nothing was written.*learning_rate"):
        bt.train_behavior("inverted_pendulum", num_timesteps=1000, out_dir=tmp_path,
                          log=lambda m: None)
    assert not any(tmp_path.iterdir())
    rc = script.main(["--task", "inverted_pendulum", "--num-timesteps", "1000",
                      "--out-dir", str(tmp_path)])
    assert rc == 2 and "train_behavior: error: inverted_pendulum: Brax PPO training failed" in \
        capsys.readouterr().err
