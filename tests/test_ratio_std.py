"""trpo.ratio_std (algo/policy_opt.scoring_dist): the sigma under which TRPO scores the imagined
actions, against log-densities and KLs computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.algo import trpo
from bremen_jax.algo.policy_opt import scoring_dist
from bremen_jax.config import ConfigError
from bremen_jax.models import distributions

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)  # 0.9189385


def _dist(log_std):
    """A 'network' whose mean is its parameter and whose log_std is fixed: [N, 1] rows."""
    return lambda net, obs: (jnp.broadcast_to(net, obs.shape[:1] + (1,)),
                             jnp.full(obs.shape[:1] + (1,), log_std, jnp.float32))


@pytest.mark.parametrize("ratio_std, log_std, expected", [
    # action 0.3, mean 0.2 (one sigma=0.1 exploration draw away)
    ("policy", -5.0, -0.5 * (0.1 * math.exp(5.0)) ** 2 + 5.0 - HALF_LOG_2PI),   # -106.0513
    ("sampling", -5.0, -0.5 + math.log(10.0) - HALF_LOG_2PI),                  # 0.8836
    ("floor", -5.0, -0.5 + math.log(10.0) - HALF_LOG_2PI),                     # sigma floor
    ("floor", -1.0, -0.5 * (0.1 * math.e) ** 2 + 1.0 - HALF_LOG_2PI),          # 0.0441: kept
    ("sampling", -1.0, -0.5 + math.log(10.0) - HALF_LOG_2PI),
])
def test_log_prob_of_an_exploration_draw(ratio_std, log_std, expected):
    fn = scoring_dist(_dist(log_std), ratio_std, jnp.float32(0.1))
    mean, ls = fn(jnp.float32(0.2), jnp.zeros((1, 3)))
    got = float(distributions.log_prob(mean, ls, jnp.array([[0.3]]))[0])
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_kl_and_ratio_under_the_sampling_sigma():
    """KL(N(0.2, 0.1) || N(0.25, 0.1)) = 0.5 (0.05 / 0.1)^2 = 0.125 whatever the net's log_std;
    the surrogate's ratio for a = 0.3: exp(-0.5 (0.05/0.1)^2 + 0.5 (0.1/0.1)^2) = exp(0.375)."""
    fn = scoring_dist(_dist(-5.0), "sampling", jnp.float32(0.1))
    obs, mask = jnp.zeros((1, 3)), jnp.ones((1,))
    old_mean, old_ls = fn(jnp.float32(0.2), obs)
    kl = trpo.mean_kl(fn, jnp.float32(0.25), obs, mask, old_mean, old_ls)
    assert float(kl) == pytest.approx(0.125, rel=1e-5)
    logp_old = distributions.log_prob(old_mean, old_ls, jnp.array([[0.3]]))
    loss = trpo.surrogate_loss(fn, jnp.float32(0.25), obs, jnp.array([[0.3]]), jnp.ones((1,)),
                               mask, logp_old)
    assert float(loss) == pytest.approx(-math.exp(0.375), rel=1e-5)
    # the faithful scoring: same move, KL 0.5 (0.05 e^5)^2 = 275.3 (the trust region's scale)
    pol = scoring_dist(_dist(-5.0), "policy", jnp.float32(0.1))
    m, ls = pol(jnp.float32(0.2), obs)
    assert float(trpo.mean_kl(pol, jnp.float32(0.25), obs, mask, m, ls)) == pytest.approx(
        0.5 * (0.05 * math.exp(5.0)) ** 2, rel=1e-4)


def test_unknown_mode_and_config_errors():
    with pytest.raises(ValueError, match="ratio_std"):
        scoring_dist(_dist(-5.0), "exact", jnp.float32(0.1))
    cfg = config_lib.load_config("test")
    for bad in (["trpo.ratio_std='sampling'", "imagine.explore_sigma=0.0"],
                ["trpo.ratio_std='floor'", "imagine.exploration='learned'"]):
        with pytest.raises(ConfigError, match="trpo.ratio_std"):
            config_lib.validate(config_lib.apply_overrides(cfg, bad))
    with pytest.raises(ConfigError, match="policy.*sampling.*floor|choices|one of"):
        config_lib.validate(config_lib.apply_overrides(cfg, ["trpo.ratio_std='exact'"]))
    assert np.isfinite(config_lib.validate(
        config_lib.apply_overrides(cfg, ["trpo.ratio_std='sampling'"]))["imagine.explore_sigma"])
