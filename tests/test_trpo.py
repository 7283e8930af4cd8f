"""TRPO pieces: FVP vs jax.hessian, CG vs np.linalg.solve, line search rules, full step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bremen_jax.algo import natural_gradient as ng
from bremen_jax.algo import trpo
from bremen_jax.models import distributions

OBS_DIM, ACT_DIM = 3, 2


def dist_fn(params, obs):
    """Linear mean, state-independent log_std: ([N, 2], [N, 2])."""
    mean = obs @ params["w"] + params["b"]
    return mean, jnp.broadcast_to(params["log_std"], mean.shape)


def _toy(n=256, seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(OBS_DIM, ACT_DIM)) * 0.3, jnp.float32),
              "b": jnp.zeros((ACT_DIM,), jnp.float32),
              "log_std": jnp.full((ACT_DIM,), -0.5, jnp.float32)}
    obs = jnp.asarray(rng.normal(size=(n, OBS_DIM)), jnp.float32)
    mean, log_std = dist_fn(params, obs)
    eps = jnp.asarray(rng.normal(size=(n, ACT_DIM)), jnp.float32)
    actions = mean + jnp.exp(log_std) * eps
    adv = eps @ jnp.array([1.0, -1.0]) + 0.3 * obs[:, 0]   # rewards moving the mean
    adv = (adv - adv.mean()) / adv.std()
    return params, obs, actions, adv, jnp.ones((n,), jnp.float32)


# One jitted step shared by the tests (dist_fn and cfg static): compiles once per shape.
jit_step = jax.jit(trpo.trpo_step, static_argnums=(0, 6))


def _kl_fn(params0, obs, mask):
    mean0, log_std0 = jax.tree.map(jax.lax.stop_gradient, dist_fn(params0, obs))
    return lambda p: ng.mean_kl(dist_fn, p, obs, mask, mean0, log_std0)


# --- FVP and CG -------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [0.0, 0.2])
def test_fvp_matches_hessian_of_mean_kl(shift):
    params0, obs, _, _, mask = _toy(n=32)
    kl_fn = _kl_fn(params0, obs, mask)
    # Also away from params0 (shift > 0), where ∇KL ≠ 0: the FVP is the exact damped Hessian.
    params = jax.tree.map(lambda p: p + shift, params0)
    flat, unravel = ravel_pytree(params)
    hess = jax.jit(jax.hessian(lambda f: kl_fn(unravel(f))))(flat)
    damping = 0.1
    fvp = jax.jit(ng.make_fvp(kl_fn, params, damping))
    v = jnp.asarray(np.random.default_rng(1).normal(size=flat.shape), jnp.float32)
    got = ravel_pytree(fvp(unravel(v)))[0]
    want = hess @ v + damping * v
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # Same as plain forward-over-reverse jax.jvp.
    jvp = jax.jvp(jax.grad(kl_fn), (params,), (unravel(v),))[1]
    np.testing.assert_allclose(got, ravel_pytree(jvp)[0] + damping * v, rtol=1e-5, atol=1e-6)


def _spd(n, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n))
    return (m @ m.T + n * np.eye(n)).astype(np.float32), rng.normal(size=n).astype(np.float32)


def test_cg_matches_solve_flat():
    a, b = _spd(6)
    x = jax.jit(lambda b: ng.conjugate_gradient(lambda v: jnp.asarray(a) @ v, b, 6, 1e-10))(b)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)
    # Too few iterations must not already be exact (the test can fail).
    x2 = ng.conjugate_gradient(lambda v: jnp.asarray(a) @ v, b, 1, 1e-10)
    assert not np.allclose(x2, np.linalg.solve(a, b), rtol=1e-3)


def test_cg_matches_solve_pytree():
    a, b = _spd(5, seed=2)
    b_tree = {"u": jnp.asarray(b[:2]), "v": jnp.asarray(b[2:]).reshape(3, 1)}
    _, unravel = ravel_pytree(b_tree)

    def matvec(t):
        return unravel(jnp.asarray(a) @ ravel_pytree(t)[0])

    x, rdotr = ng.conjugate_gradient_with_info(matvec, b_tree, 10, 1e-10)
    chex.assert_trees_all_equal_shapes(x, b_tree)
    np.testing.assert_allclose(ravel_pytree(x)[0], np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)
    assert rdotr < 1e-6
    # Once r·r < tol, further iterations are frozen: no NaN from 0/0 past convergence.
    chex.assert_tree_all_finite(x)


def test_cg_zero_rhs_gives_zero():
    a, _ = _spd(4)
    x = ng.conjugate_gradient(lambda v: jnp.asarray(a) @ v, jnp.zeros(4), 10, 1e-10)
    np.testing.assert_array_equal(x, np.zeros(4))


# --- line search ------------------------------------------------------------------------
# Quadratic loss (x − 1)² per coordinate from x = 0 with full step 4 (overshooting):
# frac 1 → x = 4, loss 18 (worse); frac ½ → x = 2, loss 2 (no improvement);
# frac ¼ → x = 1, loss 0, improvement 2, expected 16·¼ = 4, ratio ½ > 0.1 → index 2;
# frac ⅛ → x = ½, loss 0.5, improvement 1.5, expected 2, ratio ¾.

P0 = {"x": jnp.zeros((2,), jnp.float32)}
STEP = {"x": jnp.full((2,), 4.0, jnp.float32)}
EXPECTED = jnp.float32(16.0)   # −∇L·step = 2·(1·4)·2
HP = trpo.TRPOHParams.create(target_kl=0.5)


def quad_loss(p):
    return jnp.sum((p["x"] - 1.0) ** 2)


def sq_kl(p):
    return jnp.sum(p["x"] ** 2) / 2.0


def test_line_search_first_acceptable():
    new, m = trpo.line_search(quad_loss, sq_kl, P0, STEP, EXPECTED, trpo.TRPOConfig(), HP)
    np.testing.assert_allclose(new["x"], [1.0, 1.0])
    assert int(m["ls_index"]) == 2 and float(m["ls_accepted"]) == 1.0
    np.testing.assert_allclose(m["loss_after"], 0.0)
    np.testing.assert_allclose(m["kl_after"], 1.0)  # KL not checked by default (original)


def test_line_search_checks_kl_when_asked():
    cfg = trpo.TRPOConfig(ls_check_kl=True)
    new, m = trpo.line_search(quad_loss, sq_kl, P0, STEP, EXPECTED, cfg, HP)
    # frac ¼ has KL 1 > 0.5 → rejected; frac ⅛ has KL 0.25 → accepted.
    assert int(m["ls_index"]) == 3
    np.testing.assert_allclose(new["x"], [0.5, 0.5])
    # Non-finite KL is rejected when checking, ignored otherwise.
    nan_kl = lambda p: jnp.where(jnp.abs(p["x"][0] - 1.0) < 1e-6, jnp.nan, 0.0)  # noqa: E731
    _, m = trpo.line_search(quad_loss, nan_kl, P0, STEP, EXPECTED, cfg, HP)
    assert int(m["ls_index"]) == 3
    _, m = trpo.line_search(quad_loss, nan_kl, P0, STEP, EXPECTED, trpo.TRPOConfig(), HP)
    assert int(m["ls_index"]) == 2


@pytest.mark.parametrize("bad", [jnp.nan, -jnp.inf])
def test_line_search_never_accepts_non_finite_loss(bad):
    def loss(p):   # non-finite for the two largest steps (|x| > 1.5)
        return jnp.where(jnp.max(jnp.abs(p["x"])) > 1.5, bad, quad_loss(p))

    new, m = jax.jit(lambda p, s, e: trpo.line_search(loss, sq_kl, p, s, e, trpo.TRPOConfig(),
                                                      HP))(P0, STEP, EXPECTED)
    assert int(m["ls_index"]) == 2   # −inf would look like an infinite improvement at k = 0
    np.testing.assert_allclose(new["x"], [1.0, 1.0])


def test_line_search_keeps_old_params_when_all_fail():
    wrong = {"x": jnp.full((2,), -1.0)}   # every candidate is worse than the start
    new, m = trpo.line_search(quad_loss, sq_kl, P0, wrong, jnp.float32(4.0),
                              trpo.TRPOConfig(), HP)
    np.testing.assert_array_equal(new["x"], P0["x"])
    assert int(m["ls_index"]) == -1 and float(m["ls_accepted"]) == 0.0
    np.testing.assert_allclose(m["loss_after"], m["loss_before"])
    # All non-finite (including a NaN step): old params, nothing non-finite leaks in.
    nan_step = {"x": jnp.full((2,), jnp.nan)}
    new, m = trpo.line_search(quad_loss, sq_kl, P0, nan_step, EXPECTED, trpo.TRPOConfig(), HP)
    np.testing.assert_array_equal(new["x"], P0["x"])
    assert int(m["ls_index"]) == -1


# --- full TRPO step ---------------------------------------------------------------------

def test_trpo_step_improves_surrogate_with_kl_near_target():
    params, obs, actions, adv, mask = _toy()
    hp = trpo.TRPOHParams.create(target_kl=0.01, cg_damping=0.1)
    cfg = trpo.TRPOConfig()
    new, m = jit_step(dist_fn, params, obs, actions, adv, mask, cfg, hp)
    chex.assert_tree_all_finite(m)
    chex.assert_trees_all_equal_shapes_and_dtypes(new, params)
    assert int(m["ls_index"]) == 0, m           # full step accepted on this smooth problem
    assert float(m["surrogate_after"]) < float(m["surrogate_before"])
    np.testing.assert_allclose(m["surrogate_before"], -jnp.mean(adv), atol=1e-6)  # ratio = 1
    kl_new = float(_kl_fn(params, obs, mask)(new))
    np.testing.assert_allclose(m["kl_after"], kl_new, rtol=1e-5)
    assert 0.5 * 0.01 <= kl_new <= 1.5 * 0.01, kl_new
    np.testing.assert_allclose(m["applied_step_norm"], m["step_norm"], rtol=1e-5)
    assert float(m["cg_residual"]) < 1e-3


def test_trpo_step_full_step_on_trust_region_boundary():
    params, obs, actions, adv, mask = _toy(seed=1)
    hp = trpo.TRPOHParams.create(target_kl=0.02, cg_damping=0.1)
    new, m = jit_step(dist_fn, params, obs, actions, adv, mask, trpo.TRPOConfig(), hp)
    step = jax.tree.map(jnp.subtract, new, params)
    kl_fn = _kl_fn(params, obs, mask)
    fvp = ng.make_fvp(kl_fn, params, hp.cg_damping)
    quad = 0.5 * ravel_pytree(step)[0] @ ravel_pytree(fvp(step))[0]
    assert int(m["ls_index"]) == 0
    np.testing.assert_allclose(quad, 0.02, rtol=1e-3)   # ½ sᵀ(F+λI)s = δ


def test_trpo_step_traces_once_and_matches_eager():
    params, obs, actions, adv, mask = _toy()
    cfg = trpo.TRPOConfig()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, o, a, adv, m, hp):
        return trpo.trpo_step(dist_fn, p, o, a, adv, m, cfg, hp)

    hp1 = trpo.TRPOHParams.create(target_kl=0.01)
    p1, m1 = step(params, obs, actions, adv, mask, hp1)
    p2, _ = step(p1, obs, actions, -adv, mask, trpo.TRPOHParams.create(target_kl=0.05,
                                                                          cg_damping=0.2))
    chex.assert_tree_all_finite(p2)
    p_eager, m_eager = trpo.trpo_step(dist_fn, params, obs, actions, adv, mask, cfg, hp1)
    chex.assert_trees_all_close(p1, p_eager, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(m1["kl_after"], m_eager["kl_after"], rtol=1e-3)


def test_trpo_step_ignores_masked_nan_rows():
    params, obs, actions, adv, mask = _toy(n=224)
    pad = 32
    obs_p = jnp.concatenate([obs, jnp.full((pad, OBS_DIM), jnp.nan)])
    act_p = jnp.concatenate([actions, jnp.full((pad, ACT_DIM), jnp.inf)])
    adv_p = jnp.concatenate([adv, jnp.full((pad,), jnp.nan)])
    mask_p = jnp.concatenate([mask, jnp.zeros((pad,))])
    hp = trpo.TRPOHParams.create(target_kl=0.01)
    want, _ = jit_step(dist_fn, params, obs, actions, adv, mask, trpo.TRPOConfig(), hp)
    got, m = jit_step(dist_fn, params, obs_p, act_p, adv_p, mask_p, trpo.TRPOConfig(), hp)
    chex.assert_tree_all_finite(m)
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-6)


def test_trpo_step_zero_advantages_keeps_params():
    params, obs, actions, _, mask = _toy()
    new, m = jit_step(dist_fn, params, obs, actions, jnp.zeros(256), mask,
                      trpo.TRPOConfig(), trpo.TRPOHParams.create())
    chex.assert_trees_all_equal(new, params)
    assert float(m["ls_accepted"]) == 0.0
    chex.assert_tree_all_finite(m)


def test_surrogate_gradient_is_policy_gradient():
    # At θ = θ_old, ∇L = −mean(∇log π(a|s)·Â).
    params, obs, actions, adv, mask = _toy(n=64)
    logp_old = distributions.log_prob(*dist_fn(params, obs), actions)
    g = jax.grad(trpo.surrogate_loss, argnums=1)(dist_fn, params, obs, actions, adv, mask,
                                                 logp_old)
    want = jax.grad(lambda p: -jnp.mean(distributions.log_prob(*dist_fn(p, obs), actions)
                                        * adv))(params)
    chex.assert_trees_all_close(g, want, rtol=1e-4, atol=1e-6)


def test_bad_inputs_raise():
    params, obs, actions, adv, mask = _toy(n=16)
    cfg, hp = trpo.TRPOConfig(), trpo.TRPOHParams.create()
    with pytest.raises(ValueError, match="advantages"):
        trpo.trpo_step(dist_fn, params, obs, actions, adv[:8], mask, cfg, hp)
    with pytest.raises(ValueError, match="obs"):
        trpo.trpo_step(dist_fn, params, obs[None], actions, adv, mask, cfg, hp)
    with pytest.raises(ValueError, match="ls_backtrack"):
        trpo.TRPOConfig(ls_backtrack=1.5)
    with pytest.raises(ValueError, match="cg_iters"):
        trpo.TRPOConfig(cg_iters=0)
    with pytest.raises(ValueError, match="target_kl"):
        trpo.TRPOHParams.create(target_kl=0.0)


# --- Gauss-Newton FVP and the line-search modes --------------------------------------------

def mlp_dist_fn(params, obs):
    """2-layer tanh MLP: mean and per-row log_std from the same trunk ([N, 2], [N, 2])."""
    h = jnp.tanh(obs @ params["w1"] + params["b1"])
    out = h @ params["w2"] + params["b2"]
    return jnp.tanh(out[:, :ACT_DIM]), jnp.clip(out[:, ACT_DIM:] - 0.5, -5.0, 0.0)


def _mlp_params(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s) * 0.5, jnp.float32)  # noqa: E731
    return {"w1": f(OBS_DIM, 8), "b1": f(8), "w2": f(8, 2 * ACT_DIM), "b2": f(2 * ACT_DIM)}


@pytest.mark.parametrize("which", ["linear_shared_log_std", "mlp_per_row_log_std"])
def test_gauss_newton_fvp_equals_hessian_fvp_at_the_old_policy(which):
    fn = dist_fn if which.startswith("linear") else mlp_dist_fn
    params, obs, _, _, mask = _toy(n=40)
    if fn is mlp_dist_fn:
        params = _mlp_params()
    mask = mask.at[::3].set(0.0)          # masked rows must not count
    mean0, log_std0 = jax.tree.map(jax.lax.stop_gradient, fn(params, obs))
    kl_fn = lambda p: ng.mean_kl(fn, p, obs, mask, mean0, log_std0)  # noqa: E731
    flat, unravel = ravel_pytree(params)
    damping = 0.1
    hess = jax.jit(jax.hessian(lambda f: kl_fn(unravel(f))))(flat)
    gn = jax.jit(ng.make_gauss_newton_fvp(fn, params, obs, mask, mean0, log_std0, damping))
    for seed in range(3):
        v = jnp.asarray(np.random.default_rng(seed).normal(size=flat.shape), jnp.float32)
        got = ravel_pytree(gn(unravel(v)))[0]
        np.testing.assert_allclose(got, hess @ v + damping * v, rtol=1e-4, atol=1e-5)
    if fn is not mlp_dist_fn:
        return  # a linear model has no second-order term: GN = Hessian everywhere
    # Away from the old policy the KL Hessian has a term in the network's second derivative
    # that the GN form leaves out, so the two must differ there (this comparison can fail).
    shifted = jax.tree.map(lambda p: p + 0.3, params)
    hess_s = jax.jit(jax.hessian(lambda f: kl_fn(unravel(f))))(ravel_pytree(shifted)[0])
    gn_s = ng.make_gauss_newton_fvp(fn, shifted, obs, mask, mean0, log_std0, 0.0)
    v = jnp.asarray(np.random.default_rng(7).normal(size=flat.shape), jnp.float32)
    assert not np.allclose(ravel_pytree(gn_s(unravel(v)))[0], hess_s @ v, rtol=1e-2)


def test_trpo_step_is_the_same_with_either_fvp_and_line_search():
    params, obs, actions, adv, mask = _toy(seed=2)
    hp = trpo.TRPOHParams.create(target_kl=0.01, cg_damping=0.1)
    ref, m_ref = jit_step(dist_fn, params, obs, actions, adv, mask,
                          trpo.TRPOConfig(fvp="hessian", line_search="parallel",
                                          shs_from_cg=False), hp)   # the original's path
    new, m = jit_step(dist_fn, params, obs, actions, adv, mask, trpo.TRPOConfig(), hp)
    chex.assert_trees_all_close(new, ref, rtol=1e-4, atol=1e-6)
    for k in ("ls_index", "ls_accepted", "surrogate_after", "kl_after", "shs"):
        np.testing.assert_allclose(m[k], m_ref[k], rtol=1e-4, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("case", ["first_ok_at_2", "check_kl", "nan_kl", "all_fail", "nan_step"])
def test_sequential_and_parallel_line_search_agree(case):
    step, expected, kl_fn, check = STEP, EXPECTED, sq_kl, False
    if case == "check_kl":
        check = True
    elif case == "nan_kl":
        kl_fn = lambda p: jnp.where(jnp.abs(p["x"][0] - 1.0) < 1e-6, jnp.nan, 0.0)  # noqa: E731
        check = True
    elif case == "all_fail":
        step, expected = {"x": jnp.full((2,), -1.0)}, jnp.float32(4.0)
    elif case == "nan_step":
        step = {"x": jnp.full((2,), jnp.nan)}
    out = {}
    for mode in trpo.LINE_SEARCHES:
        cfg = trpo.TRPOConfig(ls_check_kl=check, line_search=mode)
        out[mode] = jax.jit(lambda p, s, e, cfg=cfg: trpo.line_search(
            quad_loss, kl_fn, p, s, e, cfg, HP))(P0, step, expected)
    (p_seq, m_seq), (p_par, m_par) = out["sequential"], out["parallel"]
    np.testing.assert_array_equal(p_seq["x"], p_par["x"])
    for k in m_par:
        np.testing.assert_array_equal(m_seq[k], m_par[k], err_msg=k)


def test_trpo_config_rejects_unknown_methods():
    with pytest.raises(ValueError, match="trpo.fvp must be one of"):
        trpo.TRPOConfig(fvp="exact")
    with pytest.raises(ValueError, match="trpo.line_search must be one of"):
        trpo.TRPOConfig(line_search="golden")


def test_cg_tracks_a_times_x():
    a, b = _spd(6, seed=3)
    matvec = lambda v: jnp.asarray(a) @ v  # noqa: E731
    for iters in (2, 6):   # unconverged and converged
        x, rdotr, ax = ng.conjugate_gradient_tracked(matvec, jnp.asarray(b), iters, 1e-10)
        np.testing.assert_allclose(ax, a @ np.asarray(x), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rdotr, np.sum((b - a @ np.asarray(x)) ** 2), rtol=1e-2,
                                   atol=1e-6)


# --- the named stages -------------------------------------------------------------------

def test_stages_composed_by_hand_equal_trpo_step():
    """prepare_batch -> linearize_rows -> linearized_gradient -> natural_step -> line_search is
    trpo_step, bit for bit (what the benchmarks time one by one)."""
    params, obs, actions, adv, mask = _toy(n=64)
    mask = mask.at[:5].set(0.0)
    obs = obs.at[0].set(jnp.nan)                       # ignored row: must not leak in
    cfg, hp = trpo.TRPOConfig(), trpo.TRPOHParams.create(target_kl=0.05)

    def by_stages(params, obs, actions, adv, mask):
        batch = trpo.prepare_batch(obs, actions, adv, mask)
        lin = ng.linearize_rows(dist_fn, params, batch.obs)
        old, loss0, grad = trpo.linearized_gradient(lin, batch)
        step, expected, m = trpo.natural_step(cfg, hp, dist_fn, params, batch, old, grad, lin)
        loss_fn, kl_fn = trpo.objectives(dist_fn, batch, old)
        new, m_ls = trpo.line_search(loss_fn, kl_fn, params, step, expected, cfg, hp,
                                     loss_before=loss0)
        return new, {**m_ls, **m}

    new_s, m_s = jax.jit(by_stages)(params, obs, actions, adv, mask)
    new_t, m_t = jit_step(dist_fn, params, obs, actions, adv, mask, cfg, hp)
    assert float(m_t["ls_accepted"]) == 1.0
    chex.assert_trees_all_equal(new_s, new_t)
    for k in m_s:
        np.testing.assert_array_equal(m_s[k], m_t[k], err_msg=k)


def test_prepare_batch_zeroes_ignored_rows_and_checks_shapes():
    _, obs, actions, adv, mask = _toy(n=8)
    mask = mask.at[1].set(0.0)
    batch = trpo.prepare_batch(obs.at[1].set(jnp.inf), actions.at[1].set(jnp.nan),
                               adv.at[1].set(jnp.nan), mask)
    chex.assert_tree_all_finite(batch)
    np.testing.assert_array_equal(batch.obs[1], 0.0)
    np.testing.assert_array_equal(batch.obs[0], obs[0])
    with pytest.raises(ValueError, match="advantages must be"):
        trpo.prepare_batch(obs, actions, adv[:-1], mask)


def test_natural_step_is_zero_when_xfx_is_not_positive():
    """A zero gradient gives x = 0, ½xᵀFx = 0: the guard makes the step exactly 0 (no NaN)."""
    params, obs, actions, adv, mask = _toy(n=16)
    batch = trpo.prepare_batch(obs, actions, adv, mask)
    old = trpo.old_distribution(dist_fn, params, batch)
    zero = jax.tree.map(jnp.zeros_like, params)
    step, expected, m = trpo.natural_step(trpo.TRPOConfig(), trpo.TRPOHParams.create(),
                                          dist_fn, params, batch, old, zero)
    chex.assert_trees_all_equal(step, zero)
    assert float(expected) == 0.0 and float(m["shs"]) == 0.0


# --- row chunks (natural_gradient.row_chunked): the same arithmetic, chunk by chunk ----------

def row_mlp_dist_fn(params, obs):
    """:func:`mlp_dist_fn` that also takes one row ``[o]`` (row_chunked vmaps over rows)."""
    h = jnp.tanh(obs @ params["w1"] + params["b1"])
    out = h @ params["w2"] + params["b2"]
    return jnp.tanh(out[..., :ACT_DIM]), jnp.clip(out[..., ACT_DIM:] - 0.5, -5.0, 0.0)


def test_row_chunked_gradient_and_fvp_equal_the_whole_batch():
    params, (_, obs, _, _, mask) = _mlp_params(), _toy(n=40)
    mask = mask.at[::3].set(0.0)
    chunked = ng.row_chunked(row_mlp_dist_fn, 16)          # 2 chunks of 16 + a remainder of 8
    for a, b in zip(chunked(params, obs), row_mlp_dist_fn(params, obs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    mean0, log_std0 = row_mlp_dist_fn(params, obs)
    v = jax.tree.map(lambda p: jnp.ones_like(p) * 0.3, params)
    fvps, grads = [], []
    for fn in (row_mlp_dist_fn, chunked):
        fvps.append(jax.jit(ng.make_gauss_newton_fvp(fn, params, obs, mask, mean0, log_std0,
                                                     0.1))(v))
        grads.append(jax.grad(lambda p, fn=fn: ng.mean_kl(fn, p, obs, mask, mean0 + 0.1,
                                                          log_std0))(params))
    chex.assert_trees_all_close(fvps[0], fvps[1], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(grads[0]["w1"], 0.0)
    # At most `chunk` rows (and chunk None): dist_fn itself.
    assert ng.row_chunked(row_mlp_dist_fn, None) is row_mlp_dist_fn
    for a, b in zip(ng.row_chunked(row_mlp_dist_fn, 40)(params, obs),
                    row_mlp_dist_fn(params, obs)):
        np.testing.assert_array_equal(a, b)


def test_row_chunked_step_equals_the_step_before_chunking_in_float64():
    """trpo_step with row chunks (128 rows: 4 chunks + a remainder) and without, in float64,
    against the output stored from the code before row chunking: equal to 1e-10 relative."""
    import json
    import pathlib
    import subprocess
    import sys

    here = pathlib.Path(__file__).parent
    out = here / "data" / "_x64_trpo_case_out.json"
    try:
        subprocess.run([sys.executable, str(here / "x64_trpo_case.py"), str(out), "128",
                        "none"], check=True, timeout=600)
        got = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    want = json.loads((here / "data" / "trpo_step_x64_before_row_chunks.json").read_text())
    want = want["none"]["parallel"]
    assert want["metrics"]["ls_accepted"] == 1.0       # a real step, not the old params
    for chunk in ("128", "none"):
        for ls in ("sequential", "parallel"):       # the faithful default and the batched one
            res = got[chunk][ls]
            for k, w in want["params"].items():
                np.testing.assert_allclose(res["params"][k], w, rtol=1e-10, atol=1e-12,
                                           err_msg=f"{chunk} {ls} {k}")
            for k, w in want["metrics"].items():
                atol = 1e-12 if k == "cg_residual" else 0.0   # r·r at the tolerance 1e-10
                np.testing.assert_allclose(res["metrics"][k], w, rtol=1e-10, atol=atol,
                                           err_msg=f"{chunk} {ls} {k}")


# --- one linearisation (natural_gradient.linearize_rows): π_old, gradient and FVPs ----------

@pytest.mark.parametrize("chunk", [16, None])
def test_linearized_gradient_and_fvp_equal_separate_passes(chunk):
    """linearize_rows (2 chunks of 16 + a zero-padded remainder of 8, or one chunk): its
    outputs, linearized_gradient and make_rows_gauss_newton_fvp equal old_distribution,
    policy_gradient and make_gauss_newton_fvp on the whole batch (float rounding)."""
    params, (_, obs, actions, adv, mask) = _mlp_params(), _toy(n=40)
    mask = mask.at[::3].set(0.0)
    mean0, log_std0 = row_mlp_dist_fn(params, obs)
    actions = mean0 + 0.3 * actions                    # near the policy: ratios near 1
    batch = trpo.prepare_batch(obs, actions, adv, mask)
    v = jax.tree.map(lambda p: jnp.ones_like(p) * 0.3, params)

    def separate(params):
        old = trpo.old_distribution(row_mlp_dist_fn, params, batch)
        loss, grad = trpo.policy_gradient(row_mlp_dist_fn, params, batch, old)
        fvp = ng.make_gauss_newton_fvp(row_mlp_dist_fn, params, batch.obs, mask, old.mean,
                                       old.log_std, 0.1)
        return old, loss, grad, fvp(v)

    def linearized(params):
        lin = ng.linearize_rows(row_mlp_dist_fn, params, batch.obs, chunk)
        old, loss, grad = trpo.linearized_gradient(lin, batch)
        fvp = ng.make_rows_gauss_newton_fvp(lin, mask, old.mean, old.log_std, 0.1)
        return old, loss, grad, fvp(v)

    want, got = jax.jit(separate)(params), jax.jit(linearized)(params)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want[2]["w1"], 0.0) and not np.allclose(want[3]["w1"], 0.3)


def test_rows_fvp_broadcasts_a_shared_log_std():
    """A dist_fn with one log_std [a] for all rows (the toy's, unbroadcast): the chunked
    Gauss-Newton FVP equals the Hessian-vector product of the mean KL."""
    params, obs, _, _, mask = _toy(n=40)
    shared = lambda p, o: (o @ p["w"] + p["b"], p["log_std"])  # noqa: E731
    mean0, log_std0 = shared(params, obs)
    lin = ng.linearize_rows(shared, params, obs, 16)
    np.testing.assert_array_equal(lin.outputs[1], jnp.broadcast_to(log_std0, mean0.shape))
    v = jax.tree.map(lambda p: jnp.ones_like(p) * 0.3, params)
    got = ng.make_rows_gauss_newton_fvp(lin, mask, *lin.outputs, 0.0)(v)
    kl_fn = lambda p: ng.mean_kl(shared, p, obs, mask, mean0, log_std0)  # noqa: E731
    want = jax.jvp(jax.grad(kl_fn), (params,), (v,))[1]
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["log_std"], 2.0 * 0.3, rtol=1e-6)   # ∂²KL/∂(log σ)² = 2
