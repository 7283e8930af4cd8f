"""trpo.validation = "members" (ME-TRPO's policy validation as a rollback): the per-member imagined
returns against hand-computed ones, and the rollback rule on a real chunk of the test config."""

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.algo.imagine import make_member_evaluator
from bremen_jax.algo.phases import make_phases
from bremen_jax.algo.policy_opt import scored_log_std
from bremen_jax.models import distributions
from bremen_jax.types import Transition


def _fake_model(num_members=3, done_above=4.0):
    """Member ``e`` moves every coordinate by ``e + 1`` per step whatever the action; reward =
    next_obs[0]; termination when next_obs[0] > ``done_above``; the policy's mean is 0."""
    shift = jnp.arange(1.0, num_members + 1.0)

    def predict_each_step(state, obs, action):
        del state, action
        return obs + shift[:, None, None], None, None

    dynamics = SimpleNamespace(cfg=SimpleNamespace(num_members=num_members, done_threshold=0.5),
                               heads=False, predict_each_step=predict_each_step)
    task = SimpleNamespace(reset_obs=lambda key: jnp.zeros((2,)),
                           reward_fn=lambda obs, a, nxt: nxt[..., 0],
                           done_fn=lambda nxt: nxt[..., 0] > done_above)
    policy = SimpleNamespace(dist=lambda params, obs: (jnp.zeros(obs.shape[:-1] + (1,)),
                                                       jnp.zeros(obs.shape[:-1] + (1,))))
    return task, dynamics, policy


@pytest.mark.parametrize("horizon, expected", [
    # member 0: 1 + 2 + 3 (+ 4); member 1: 2 + 4 + 6 then 6 > 4 ends it; member 2: 3 + 6, ends.
    (3, [6.0, 12.0, 9.0]),
    (4, [10.0, 12.0, 9.0]),
    (1, [1.0, 2.0, 3.0]),
])
def test_member_returns_by_hand(horizon, expected):
    task, dynamics, policy = _fake_model()
    member_eval = make_member_evaluator(task, dynamics, policy, horizon=horizon, num_rollouts=4)
    got = jax.jit(member_eval)(None, None, jax.random.key(0))
    np.testing.assert_allclose(np.asarray(got), expected)


def test_member_evaluator_rejects_bad_sizes():
    task, dynamics, policy = _fake_model()
    with pytest.raises(ValueError, match="horizon and num_rollouts must be > 0"):
        make_member_evaluator(task, dynamics, policy, horizon=0, num_rollouts=4)


def _synthetic_batch(task, n):
    """``n`` transitions of a smooth made-up system of the task's sizes (what the fit needs)."""
    k_obs, k_act = jax.random.split(jax.random.key(1))
    obs = jax.random.normal(k_obs, (n, task.obs_size))
    action = jax.random.uniform(k_act, (n, task.action_size), minval=-1.0, maxval=1.0)
    next_obs = obs + 0.1 * jnp.tanh(obs) + 0.05 * action.sum(-1, keepdims=True)
    zeros = jnp.zeros((n,))
    return Transition(obs=obs, action=action, reward=next_obs[:, 0], next_obs=next_obs,
                      done=zeros, truncation=zeros)


def _prepared(p, hp):
    """Deployment 1's preamble on synthetic data: the state ``improve`` starts from."""
    state = p.insert(p.init(jax.random.key(0)), _synthetic_batch(p.task, 400))
    for step in (p.fit_dynamics, p.fit_bc):  # no Brax step to compile: synthetic real data
        state, _ = jax.jit(step)(state, hp)
    return p, state, hp


@pytest.fixture(scope="module")
def chunk_inputs():
    """The test config's phases, the state after deployment 1's preamble, its HParams."""
    cfg = config_lib.load_config("test")
    static, hp = config_lib.split(cfg)
    return _prepared(make_phases(static), hp)


@pytest.fixture(scope="module")
def chunk():
    """The test config after deployment 1's preamble, and its first improve chunk with and
    without validation (ratio 0: always kept; ratio 2: always rolled back)."""
    base = config_lib.load_config("test")
    cfgs = {v: config_lib.apply_overrides(base, [f"trpo.validation='{v}'"])
            for v in ("none", "members")}
    phases = {v: make_phases(config_lib.split(c)[0]) for v, c in cfgs.items()}
    _, hp = config_lib.split(cfgs["members"])
    p, state, hp = _prepared(phases["none"], hp)
    out = {"start": state}
    improve = {v: jax.jit(lambda s, h, ph=ph: ph.improve(s, h, num_iterations=2))
               for v, ph in phases.items()}
    out["none"] = improve["none"](state, hp)
    for name, ratio in (("keep", 0.0), ("rollback", 2.0)):
        hp_r = hp.replace(trpo=hp.trpo.replace(validation_ratio=jnp.float32(ratio)))
        out[name] = improve["members"](state, hp_r)
    return out


def _equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _close(a, b, rtol=1e-5, atol=1e-6):
    """Equal up to float rounding: two different programs (e.g. 1 vs 3 iterations, or with and
    without validation) may fuse the same update differently."""
    return all(np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_validation_ratio_zero_keeps_the_chunk(chunk):
    """Ratio 0 never rolls back: the chunk equals the one without validation, up to the float
    rounding of two different programs: the test config's tiny TRPO step is ill-conditioned
    (CG residual 1e-9), its step norm differs by ~1e-4 relative and parameters by ~3e-6, against
    a step of norm 0.84 (the rolled-back case below is that far away)."""
    (s_none, m_none), (s_keep, m_keep) = chunk["none"], chunk["keep"]
    assert _close(s_none.learner, s_keep.learner, rtol=1e-3, atol=1e-4)
    assert not _equal(s_keep.learner.policy, chunk["start"].learner.policy)  # TRPO moved it
    assert np.all(np.asarray(m_keep["validation/rolled_back"]) == 0)
    assert m_keep["validation/improved_fraction"].shape == (2,)
    assert "validation/rolled_back" not in m_none
    for k in m_none:
        np.testing.assert_allclose(np.asarray(m_none[k]), np.asarray(m_keep[k]), rtol=1e-3,
                                   atol=1e-5, err_msg=k)


def test_validation_rolls_back_the_policy_only(chunk):
    (s_keep, m_keep), (s_back, m_back) = chunk["keep"], chunk["rollback"]
    start = chunk["start"].learner
    assert _equal(s_back.learner.policy, start.policy)
    assert _equal(s_back.learner.baseline, s_keep.learner.baseline)  # refits are kept
    assert np.all(np.asarray(m_back["validation/rolled_back"]) == 1)
    frac = np.asarray(m_back["validation/improved_fraction"])
    assert np.all((frac >= 0) & (frac <= 1))
    # The fraction and the returns do not depend on the ratio (same policies, same key).
    for k in ("validation/improved_fraction", "validation/return_before",
              "validation/return_after"):
        np.testing.assert_array_equal(np.asarray(m_back[k]), np.asarray(m_keep[k]), err_msg=k)


def test_validation_config_fields():
    cfg = config_lib.load_config("test")
    static, hp = config_lib.split(cfg)
    assert static.trpo.validation == "none"
    assert float(hp.trpo.validation_ratio) == pytest.approx(0.7)
    with pytest.raises(config_lib.ConfigError, match="trpo.validation"):
        config_lib.validate(config_lib.apply_overrides(cfg, ["trpo.validation='stop'"]))
    with pytest.raises(config_lib.ConfigError, match="trpo.validation_ratio"):
        config_lib.validate(config_lib.apply_overrides(cfg, ["trpo.validation_ratio=1.5"]))


# ------------------------------------------------------------------------ trpo.kl_budget
@pytest.mark.parametrize("ratio_std, expected", [
    # means 0.3 vs 0.1, own log-std -5 for both; exploration sigma 0.1
    ("sampling", 0.5 * 0.2 ** 2 / 0.1 ** 2),                 # 2.0: under N(., 0.1)
    ("policy", 0.5 * 0.2 ** 2 / math.exp(-10.0)),            # 440.5: under N(., e^-5)
    ("floor", 0.5 * 0.2 ** 2 / 0.1 ** 2),                    # max(e^-5, 0.1) = 0.1
])
def test_scored_kl_by_hand(ratio_std, expected):
    ls = jnp.full((1,), -5.0)
    sig = jnp.float32(0.1)
    got = distributions.kl(jnp.array([0.3]), scored_log_std(ls, ratio_std, sig),
                           jnp.array([0.1]), scored_log_std(ls, ratio_std, sig))
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_kl_budget_stops_the_policy_past_the_budget(chunk_inputs):
    """Budget 1e-9: the first iteration starts at the clone (KL 0) and updates; every later
    iteration starts past the budget and keeps the policy: 3 iterations = 1 iteration."""
    phases, state, hp = chunk_inputs
    tight = hp.replace(trpo=hp.trpo.replace(kl_budget=jnp.float32(1e-9)))
    one, _ = jax.jit(lambda s, h: phases.improve(s, h, num_iterations=1))(state, hp)
    three, m = jax.jit(lambda s, h: phases.improve(s, h, num_iterations=3))(state, tight)
    assert _close(three.learner.policy, one.learner.policy)
    np.testing.assert_array_equal(np.asarray(m["trpo/over_kl_budget"]), [0, 1, 1])
    assert abs(float(np.asarray(m["kl_to_behavior_scored"])[0])) < 1e-6  # the clone: 0 up to rounding
    assert np.all(np.asarray(m["kl_to_behavior_scored"])[1:] > 1e-9)
    free, m_free = jax.jit(lambda s, h: phases.improve(s, h, num_iterations=3))(state, hp)
    assert not _close(free.learner.policy, one.learner.policy)
    assert np.all(np.asarray(m_free["trpo/over_kl_budget"]) == 0)


@pytest.mark.parametrize("deployment, decay, over", [
    # budget = 2 x KL after one iteration (kl1); deployment k's is 2 kl1 * decay^(k-1)
    (1, 0.5, [0, 0]),   # 2 kl1 * 0.5^0 = 2 kl1 > kl1: the second iteration updates
    (2, 0.5, [0, 0]),   # 2 kl1 * 0.5^1 = kl1 (equal): not over (over = KL > budget)
    (3, 0.5, [0, 1]),   # 2 kl1 * 0.5^2 = kl1 / 2 < kl1: the second iteration is skipped
    (3, 1.0, [0, 0]),   # no decay: 2 kl1 in every deployment
    (0, 0.5, [0, 0]),   # before the first collect (the test's state): the undecayed budget
])
def test_kl_budget_decays_per_deployment(chunk_inputs, deployment, decay, over):
    phases, state, hp = chunk_inputs
    run = jax.jit(lambda s, h: phases.improve(s, h, num_iterations=2))
    _, m_free = run(state, hp)
    kl1 = np.float32(np.asarray(m_free["kl_to_behavior_scored"])[1])  # KL entering iteration 2
    assert kl1 > 0
    budget = 2.0 * kl1
    if deployment == 2:  # equality at the boundary: 2 kl1 * 0.5 is exact in float32
        assert np.float32(budget) * np.float32(0.5) == kl1
    hp_b = hp.replace(trpo=hp.trpo.replace(kl_budget=jnp.float32(budget),
                                           kl_budget_decay=jnp.float32(decay)))
    st = state.replace(deployment=jnp.asarray(deployment, jnp.int32))
    _, m = run(st, hp_b)
    np.testing.assert_allclose(np.asarray(m["kl_to_behavior_scored"]),
                               np.asarray(m_free["kl_to_behavior_scored"]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(m["trpo/over_kl_budget"]), over)
    assert run._cache_size() == 1  # budget, decay and deployment are traced: one program


@pytest.mark.parametrize("deployment, warmup_deployments, capped", [
    (1, 1, True), (2, 1, False), (2, 2, True), (3, 2, False), (1, 0, False)])
def test_warmup_horizon_caps_paths_in_the_warmup_deployments_only(
        chunk_inputs, deployment, warmup_deployments, capped):
    """imagine.warmup_horizon = 1: every imagined row ends its path, so an iteration has
    exactly imagine.batch_size = 160 paths of one step (the test config: H = 20, 8 columns);
    outside deployments 1 .. warmup_deployments the paths run to H or termination (fewer).
    Horizon cap, deployments and deployment are traced: one program."""
    phases, state, hp = chunk_inputs
    run = jax.jit(lambda s, h: phases.improve(s, h, num_iterations=2))
    hp_w = hp.replace(imagine=hp.imagine.replace(
        warmup_horizon=jnp.int32(1), warmup_deployments=jnp.int32(warmup_deployments)))
    _, m = run(state.replace(deployment=jnp.asarray(deployment, jnp.int32)), hp_w)
    paths, rows = np.asarray(m["imagined_paths"]), np.asarray(m["imagined_rows"])
    if capped:
        np.testing.assert_array_equal(paths, [160, 160])
        np.testing.assert_array_equal(rows, [160, 160])
    else:
        assert np.all(paths < 160)
    assert run._cache_size() == 1


def test_warmup_horizon_must_fit_the_horizon():
    cfg = config_lib.load_config("test")
    with pytest.raises(config_lib.ConfigError, match=r"imagine.warmup_horizon \(21\) must be <= "
                       r"imagine.horizon \(20\)"):
        config_lib.validate(config_lib.apply_overrides(cfg, ["imagine.warmup_horizon=21"]))
    config_lib.validate(config_lib.apply_overrides(cfg, ["imagine.warmup_horizon=20"]))


def test_disagreement_penalty_is_traced_and_reported():
    """imagine.penalty='disagreement' through the TRPO loop: its lambda is an HParam (one
    program for lambda 0 and 5); lambda 0 gives the plain imagined return, lambda 5 lowers it
    by exactly the reported penalty (first iteration: same policy, same key)."""
    base = config_lib.load_config("test")
    cfg = config_lib.apply_overrides(base, ["imagine.penalty='disagreement'"])
    static, hp = config_lib.split(cfg)
    plain = make_phases(config_lib.split(base)[0])
    p, state, hp = _prepared(make_phases(static), hp)
    run = jax.jit(lambda s, h: p.improve(s, h, num_iterations=1))
    out = {}
    for lam in (0.0, 5.0):
        out[lam] = run(state, hp.replace(imagine=hp.imagine.replace(
            penalty_coef=jnp.float32(lam))))[1]
    _, m_plain = jax.jit(lambda s, h: plain.improve(s, h, num_iterations=1))(state, hp)
    assert run._cache_size() == 1
    np.testing.assert_allclose(out[0.0]["imagined_return"], m_plain["imagined_return"], rtol=1e-4)
    assert "imagined_disagreement" not in m_plain
    u = float(out[5.0]["imagined_disagreement"][0])
    assert u > 0 and u == float(out[0.0]["imagined_disagreement"][0])
    assert float(out[0.0]["imagined_penalty"][0]) == 0.0
    pen = float(out[5.0]["imagined_penalty"][0])
    assert pen > 0
    np.testing.assert_allclose(out[5.0]["imagined_return"][0],
                               out[0.0]["imagined_return"][0] - pen, rtol=1e-4)


# ------------------------------------------------------------------------ trpo.kl_budget_states
def _with_states(chunk_inputs, where):
    _, state, hp = chunk_inputs
    cfg = config_lib.apply_overrides(config_lib.load_config("test"),
                                     [f"trpo.kl_budget_states='{where}'"])
    return make_phases(config_lib.split(cfg)[0]), state, hp


def test_kl_scored_on_given_states_by_hand(chunk_inputs):
    """Policy mean tanh(atanh 0.2) = 0.2 everywhere, clone mean 0 (output kernels zeroed):
    under ratio_std 'sampling' (sigma 0.1) the KL of every row is a * 0.5 * 0.2^2 / 0.1^2."""
    phases, state, hp = chunk_inputs
    a = phases.task.action_size

    def const_head(net, mu):
        out = dict(net["params"]["output"])
        out["kernel"] = jnp.zeros_like(out["kernel"])
        out["bias"] = jnp.zeros_like(out["bias"]).at[:a].set(mu)
        return {"params": {**net["params"], "output": out}}

    pol = state.learner.policy
    learner = state.learner.replace(policy=pol.replace(net=const_head(pol.net, math.atanh(0.2))),
                                    behavior=pol.replace(net=const_head(pol.net, 0.0)))
    cfg = config_lib.apply_overrides(config_lib.load_config("test"),
                                     ["trpo.ratio_std='sampling'"])
    p = make_phases(config_lib.split(cfg)[0])
    obs = jax.random.normal(jax.random.key(3), (7, phases.task.obs_size))
    got = float(p.opt.kl_scored(learner, obs, hp))
    assert got == pytest.approx(a * 0.5 * 0.2 ** 2 / 0.1 ** 2, rel=1e-4)


def test_kl_states_come_from_the_latest_batch(chunk_inputs):
    phases, state, hp = _with_states(chunk_inputs, "latest")
    assert phases._kl_states(state, jax.random.key(0)) is not None
    second = _synthetic_batch(phases.task, 400)
    second = second.replace(obs=second.obs + 100.0)  # the latest batch: every coordinate > 90
    st2 = phases.insert(state, second)
    rows = np.asarray(phases._kl_states(st2, jax.random.key(0)))
    assert rows.shape == (phases.static.imagine.batch_size, phases.task.obs_size)
    assert np.all(rows > 90.0)
    assert _with_states(chunk_inputs, "imagined")[0]._kl_states(st2, jax.random.key(0)) is None


def test_kl_budget_states_pick_the_kl_the_budget_checks(chunk_inputs):
    """A budget between the imagined and the latest-batch KL entering iteration 2: only the
    option measuring the larger one skips that iteration; 'imagined' logs no latest KL."""
    p_max, state, hp = _with_states(chunk_inputs, "max")
    run = {w: jax.jit(lambda s, h, p=_with_states(chunk_inputs, w)[0]:
                      p.improve(s, h, num_iterations=2))
           for w in ("imagined", "latest", "max")}
    _, m_free = run["max"](state, hp)
    kl_im = float(np.asarray(m_free["kl_to_behavior_scored"])[1])
    kl_la = float(np.asarray(m_free["kl_to_behavior_latest"])[1])
    assert abs(float(np.asarray(m_free["kl_to_behavior_latest"])[0])) < 1e-6  # the clone
    assert kl_im > 0 and kl_la > 0 and not math.isclose(kl_im, kl_la, rel_tol=0.05)
    budget = jnp.float32(math.sqrt(kl_im * kl_la))  # strictly between the two
    hp_b = hp.replace(trpo=hp.trpo.replace(kl_budget=budget))
    over = {w: np.asarray(r(state, hp_b)[1]["trpo/over_kl_budget"]).tolist()
            for w, r in run.items()}
    larger = "latest" if kl_la > kl_im else "imagined"
    smaller = "imagined" if larger == "latest" else "latest"
    assert over[larger] == [0, 1] and over["max"] == [0, 1] and over[smaller] == [0, 0]
    assert "kl_to_behavior_latest" not in run["imagined"](state, hp)[1]
    # max_learned: the imagined KL alone on an online run's uniform-random first batch
    # (deployment <= 1), the max from deployment 2 on and on an offline run's dataset.
    assert over["imagined"] != over["max"]   # here the latest-batch KL is the larger
    p_ml = _with_states(chunk_inputs, "max_learned")[0]
    for deployment, offline, expect in ((1, False, "imagined"), (2, False, "max"),
                                        (1, True, "max")):
        st = state.replace(deployment=jnp.asarray(deployment, jnp.int32))
        got = jax.jit(lambda s, h, o=offline: p_ml.improve(s, h, num_iterations=2,
                                                           offline=o))(st, hp_b)[1]
        assert np.asarray(got["trpo/over_kl_budget"]).tolist() == over[expect], (deployment,
                                                                                  offline)


def test_kl_budget_states_config_field():
    cfg = config_lib.load_config("test")
    assert config_lib.split(cfg)[0].trpo.kl_budget_states == "imagined"  # the original
    with pytest.raises(config_lib.ConfigError, match="trpo.kl_budget_states"):
        config_lib.validate(config_lib.apply_overrides(cfg, ["trpo.kl_budget_states='real'"]))
