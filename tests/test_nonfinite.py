"""Nothing non-finite passes silently (issue 13): every guarded update rejects a non-finite result
(old values kept, counted), non-finite actions never reach a buffer, a run whose policy produces
them stops with one line and its last checkpoint intact, and the metrics files show "nan".

The unit cases are tiny and hand-checkable; the end-to-end cases use the ``test`` config.
"""

import dataclasses
import hashlib
import io
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rich.console
from test_acting import toy_task

from bremen_jax import config as config_lib
from bremen_jax.algo import baseline as bl
from bremen_jax.algo import bc as bc_lib
from bremen_jax.algo import trpo
from bremen_jax.config import (
    BCHParams,
    DynamicsConfig,
    DynamicsHParams,
    TRPOConfig,
    TRPOHParams,
    ValueHParams,
    schema,
)
from bremen_jax.envs.acting import count_nonfinite_actions, make_collector
from bremen_jax.models import policy as pol
from bremen_jax.models.dynamics import make_dynamics
from bremen_jax.run import errors, run_compiled, run_host
from bremen_jax.run.logs import MetricWriter, read_jsonl, to_python
from bremen_jax.types import Transition, all_finite, keep_if


def _data(n=64, obs=3, act=2, seed=0):
    rng = np.random.RandomState(seed)
    o = jnp.asarray(rng.randn(n, obs), jnp.float32)
    a = jnp.asarray(np.tanh(rng.randn(n, act)), jnp.float32)
    z = jnp.zeros((n,), jnp.float32)
    return Transition(obs=o, action=a, reward=z, next_obs=o + 0.1 * a.sum(-1, keepdims=True),
                      done=z, truncation=z)


# --- the helpers --------------------------------------------------------------------------------

def test_all_finite_and_keep_if():
    assert bool(all_finite({"a": jnp.ones(3), "n": jnp.int32(7)}))
    assert not bool(all_finite({"a": jnp.array([1.0, jnp.nan])}))
    assert not bool(all_finite((jnp.ones(2), jnp.array([-jnp.inf]))))
    assert bool(all_finite(()))
    new, old = {"w": jnp.array([jnp.nan, 2.0])}, {"w": jnp.array([1.0, 1.0])}
    chex.assert_trees_all_equal(keep_if(all_finite(new), new, old), old)


# --- each guard on its own ----------------------------------------------------------------------

def test_bc_with_a_huge_learning_rate_rejects_its_steps():
    """lr 3e38 (near float32's largest, 3.4e38): the first Adam step moves every weight by ~3e38
    (finite); the next one would pass float32's range (and the saturated net's forward pass gives
    nan), so every later step is rejected and counted, and the parameters stay finite. (With lr
    1e30 this test relied on the loss overflowing, which the tanh-bounded mean never does: a
    fresh install on 2026-12-04 took all ten steps, at this commit and at the one before.)"""
    policy = pol.make_policy(pol.PolicyConfig(3, 2, hidden_sizes=(8,)))
    bc = bc_lib.make_bc(policy, bc_lib.BCConfig(batch_size=16, num_steps=10, reinit=False))
    state = bc.init(jax.random.key(0))
    data, mask = _data(), jnp.ones((64,), bool)
    _, m_good = bc.fit(state, data, mask, BCHParams.create(1e-3), jax.random.key(1))
    assert int(m_good["nonfinite_steps"]) == 0
    hp = BCHParams.create(1e-3).replace(learning_rate=jnp.float32(3e38))
    bad, m = jax.jit(bc.fit)(state, data, mask, hp, jax.random.key(1))
    chex.assert_tree_all_finite((bad.params, bad.opt_state))
    assert 1 <= int(m["nonfinite_steps"]) <= 10
    # lr nan: every step is rejected, so the net and Adam state are exactly the old ones.
    nan_hp = hp.replace(learning_rate=jnp.float32(jnp.nan))
    kept, m = jax.jit(bc.fit)(state, data, mask, nan_hp, jax.random.key(1))
    assert int(m["nonfinite_steps"]) == 10
    chex.assert_trees_all_equal((kept.params.net, kept.opt_state.mu, kept.opt_state.nu),
                                (state.params.net, state.opt_state.mu, state.opt_state.nu))


def test_dynamics_fit_rejects_non_finite_steps_per_member():
    """lr nan: every Adam step of every running member is rejected; the ensemble is unchanged
    and the count is members x steps. A finite lr counts nothing."""
    cfg = DynamicsConfig(num_members=2, hidden_sizes=(8,), batch_size=16, max_epochs=3,
                         eval_every=1, patience=5)
    dyn = make_dynamics(3, 2, cfg)
    state = dyn.init(jax.random.key(0))
    data = _data()
    train = jnp.arange(64) < 48
    fit = jax.jit(dyn.fit)
    hp = DynamicsHParams.create(learning_rate=1e-3)
    _, m = fit(state, data, train, ~train, hp, jax.random.key(1))
    assert int(m["nonfinite_steps"]) == 0
    new, m = fit(state, data, train, ~train, hp.replace(learning_rate=jnp.float32(jnp.nan)),
                 jax.random.key(1))
    assert int(m["nonfinite_steps"]) == 2 * 3 * (48 // 16)   # members x epochs x minibatches
    chex.assert_trees_all_equal((new.params, new.opt_state), (state.params, state.opt_state))
    # weight_decay 1e30: the L2 gradient overflows the Adam moments; finite weights all along.
    new, m = fit(state, data, train, ~train, hp.replace(weight_decay=jnp.float32(1e30)),
                 jax.random.key(1))
    assert int(m["nonfinite_steps"]) > 0
    chex.assert_tree_all_finite((new.params, new.opt_state))


def _linear_dist(params, obs):
    mean = obs @ params["w"]
    return mean, jnp.broadcast_to(params["log_std"], mean.shape)


def test_trpo_step_with_a_nan_advantage_keeps_the_old_params():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
              "log_std": jnp.zeros((2,), jnp.float32)}
    obs = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
    actions = jnp.asarray(rng.normal(size=(32, 2)), jnp.float32)
    adv = jnp.asarray(rng.normal(size=(32,)), jnp.float32)
    mask = jnp.ones((32,), jnp.float32)
    step = jax.jit(trpo.trpo_step, static_argnums=(0, 6))
    cfg, hp = TRPOConfig(), TRPOHParams.create()
    _, m = step(_linear_dist, params, obs, actions, adv, mask, cfg, hp)
    assert int(m["nonfinite"]) == 0 and float(m["ls_accepted"]) == 1.0
    kept, m = step(_linear_dist, params, obs, actions, adv.at[5].set(jnp.nan), mask, cfg, hp)
    assert int(m["nonfinite"]) == 1
    chex.assert_trees_all_equal(kept, params)
    # A NaN in a masked-out row is ignored (zeroed before the gradient), not counted.
    _, m = step(_linear_dist, params, obs, actions, adv.at[5].set(jnp.nan), mask.at[5].set(0.0),
                cfg, hp)
    assert int(m["nonfinite"]) == 0


def test_baseline_fits_reject_non_finite_results():
    feats = bl.linear_features(jnp.ones((10, 2)), jnp.arange(10))
    prev = bl.LinearBaseline(coeffs=jnp.arange(8, dtype=jnp.float32))
    ok_fit, rejected = bl.fit_linear_checked(feats, jnp.ones(10), jnp.ones(10, bool), prev=prev)
    assert not bool(rejected) and bool(all_finite(ok_fit))
    kept, rejected = bl.fit_linear_checked(feats, jnp.full(10, jnp.nan), jnp.ones(10, bool),
                                           prev=prev)
    assert bool(rejected)
    chex.assert_trees_all_equal(kept, prev)
    # The MLP value function: a NaN target poisons the whole fit; it is rejected.
    vf = bl.make_value(bl.ValueConfig(obs_dim=2, hidden_sizes=(4,), num_steps=3))
    state = vf.init(jax.random.key(0))
    obs, mask = jnp.ones((6, 2)), jnp.ones(6, bool)
    _, m = vf.fit(state, obs, jnp.ones(6), mask, ValueHParams.create(), jax.random.key(1))
    assert int(m["nonfinite"]) == 0
    new, m = vf.fit(state, obs, jnp.ones(6).at[0].set(jnp.nan), mask, ValueHParams.create(),
                    jax.random.key(1))
    assert int(m["nonfinite"]) == 1
    chex.assert_trees_all_equal(new, state)


def test_collector_masks_and_counts_non_finite_actions():
    """Envs 0 and 2 get a NaN action at every step: they step with 0 instead, the stored rows
    hold the masked (finite) action, and every such step is flagged."""
    task = toy_task()

    def policy(params, obs, key):
        del params, key
        return jnp.where(obs[1] < 0.5, jnp.nan, 1.0)[None]   # obs[1] is fixed per episode

    collect = jax.jit(make_collector(task, policy, 4, 10))
    tr, stats = collect(None, jax.random.key(0))
    want = np.asarray(tr.obs[:, :, 1] < 0.5)
    np.testing.assert_array_equal(np.asarray(stats.nonfinite_actions), want)
    assert int(count_nonfinite_actions(stats)) == want.sum() > 0
    chex.assert_tree_all_finite(tr)
    np.testing.assert_array_equal(np.asarray(tr.action[..., 0]), np.where(want, 0.0, 1.0))


# --- logs ---------------------------------------------------------------------------------------

def test_logs_write_nan_and_inf_as_strings(tmp_path):
    row = to_python({"a": np.float32(np.nan), "b": np.inf, "c": -np.inf, "d": 1.5,
                     "e": np.array([1.0, np.nan])})
    assert row == {"a": "nan", "b": "inf", "c": "-inf", "d": 1.5, "e": [1.0, "nan"]}
    w = MetricWriter(tmp_path, tensorboard=False)
    w.write("chunks", 1, {"x": np.float32(np.nan), "y": 2.0})
    w.close()
    (got,) = read_jsonl(tmp_path / "chunks.jsonl")
    assert got == {"step": 1, "x": "nan", "y": 2.0}
    assert np.isnan(np.float64(got["x"]))      # how the tests compare rows
    assert (tmp_path / "chunks.csv").read_text().splitlines() == ["step,x,y", "1,nan,2.0"]


def test_console_lines_and_error_wording():
    m = {"nonfinite/bc_steps": np.int32(37), "nonfinite/dynamics_steps": np.int32(0),
         "nonfinite/trpo_steps": np.array([[0, 1, 1], [1, 1, 2]])}   # [C, chunk] running counts
    assert errors.nonfinite_lines(m) == [
        "fit_bc: 37 non-finite BC updates rejected (previous values kept)",
        "improve: 3 non-finite TRPO steps rejected (previous values kept)"]
    errors.check_actions({"nonfinite/actions": np.int32(0)}, 2, (1, 2), "W")
    with pytest.raises(errors.NonFiniteError, match=r"^deployment 2: the policy produced 6000 "
                       r"non-finite actions; the run stopped in W; its last good checkpoint "
                       r"\(deployment 1, chunk 2\) is intact"):
        errors.check_actions({"nonfinite/actions": np.int32(6000)}, 2, (1, 2), "W")


# --- end to end ---------------------------------------------------------------------------------

def _tree_hash(root: pathlib.Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def unchecked(monkeypatch):
    """Lets ``config.override`` set a field outside its schema range (validation bypassed)."""
    def allow(name):
        monkeypatch.setitem(schema.SCHEMA, name,
                            dataclasses.replace(schema.SCHEMA[name], check=None))
    return allow


@pytest.fixture
def poisoned_cfg(unchecked):
    """The issue's case: bc.learning_rate 1e30 (and dynamics.learning_rate 1e30), validation
    bypassed. BC's first step makes weights of ~1e30 (finite, kept), later steps overflow and are
    rejected; the cloned policy's actions are inf/NaN from deployment 2 on."""
    unchecked("dynamics.learning_rate")
    unchecked("bc.learning_rate")
    return config_lib.override(config_lib.load_config("test"),
                               {"dynamics.learning_rate": 1e30, "bc.learning_rate": 1e30})


def test_poisoned_policy_stops_the_host_run_with_its_checkpoints_intact(tmp_path, poisoned_cfg,
                                                                        capsys):
    from bremen_jax.cli import main

    console = rich.console.Console(file=io.StringIO(), width=200, record=True)
    run_host(poisoned_cfg, tmp_path, progress=False, stop_at=(1, 2), console=console)
    # Deployment 1 (uniform random data) runs; its rejected updates are said once per phase.
    lines = console.export_text().splitlines()
    assert len([x for x in lines if x.startswith("deployment 1: fit_bc: ")]) == 1, lines
    assert any(x.startswith("deployment 1: fit_bc: ") and "non-finite BC updates rejected" in x
               for x in lines), lines
    assert any(x.startswith("deployment 1: fit_dynamics: ") for x in lines), lines
    (dep,) = read_jsonl(tmp_path / "deployments.jsonl")
    assert dep["nonfinite/dynamics_steps"] > 0 and dep["nonfinite/bc_steps"] > 0
    assert dep["nonfinite/actions"] == 0
    chunks = (tmp_path / "chunks.jsonl").read_text()
    assert '"nan"' in chunks and "null" not in chunks and "NaN" not in chunks

    before = _tree_hash(tmp_path / "checkpoints")
    summary = (tmp_path / "summary.json").read_text()   # of the stopped part: not finished
    capsys.readouterr()
    rc = main(["train", "--resume", "--workdir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(
        "bremen train: error: deployment 2: the policy produced 400 non-finite actions; the run "
        f"stopped in {tmp_path}; its last good checkpoint (deployment 1, chunk 2) is intact"), err
    assert _tree_hash(tmp_path / "checkpoints") == before
    assert (tmp_path / "chunks.jsonl").read_text() == chunks
    assert (tmp_path / "summary.json").read_text() == summary


def test_compiled_driver_refuses_to_save_a_poisoned_run(tmp_path, poisoned_cfg):
    with pytest.raises(errors.NonFiniteError, match="deployment 2: the policy produced 400 "
                       "non-finite actions; .* it has no checkpoint yet"):
        run_compiled(poisoned_cfg, tmp_path)
    assert not any((tmp_path / "checkpoints").glob("*"))
    assert not (tmp_path / "chunks.jsonl").exists() and not (tmp_path / "summary.json").exists()
