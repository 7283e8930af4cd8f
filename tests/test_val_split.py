"""dynamics.val_split: which rows of a collected batch validate the ensemble (issue 11)."""

import jax
import numpy as np
import pytest

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases
from bremen_jax.data import buffer as buffer_lib


def _collect(val_split: str):
    cfg = config_lib.apply_overrides(config_lib.load_config("test"),
                                     [f"dynamics.val_split={val_split}"])
    static, hp = config_lib.split(cfg)
    phases = make_phases(static)
    state, _ = jax.jit(phases.collect)(phases.init(jax.random.key(0)), hp)
    return static, state.buffer


def test_per_env_validates_the_end_of_every_env_and_keeps_the_data():
    static, per_env = _collect("per_env")
    _, ordered = _collect("ordered")
    E, T = static.deploy.num_envs, static.deploy.collect_steps
    assert (E, T) == (8, 50)  # the test config: 8 envs x 50 steps, stored env by env
    assert static.val_blocks == 8
    # ordered (the original): the batch's last 400 - int(400 * 0.85) = 60 rows, i.e. envs 6.8-7
    np.testing.assert_array_equal(np.flatnonzero(ordered.is_val), np.arange(340, 400))
    # per_env: int(50 * 0.85) = 42 training steps per env, steps 42..49 of every env
    expected = [e * T + t for e in range(E) for t in range(42, 50)]
    np.testing.assert_array_equal(np.flatnonzero(per_env.is_val), expected)
    assert int(buffer_lib.train_mask(per_env).sum()) == 8 * 42 == buffer_lib.split_sizes(
        400, 0.15, 8)[0]
    # the split flags are all that differ: the same key collects the same transitions
    for a, b in zip(jax.tree.leaves(per_env.data), jax.tree.leaves(ordered.data)):
        np.testing.assert_array_equal(a, b)


def test_val_split_is_checked():
    with pytest.raises(config_lib.ConfigError,
                       match=r"dynamics.val_split must be one of \['ordered', 'per_env'\]"):
        config_lib.apply_overrides(config_lib.load_config("test"), ["dynamics.val_split=random"])


def test_per_env_training_rows_count_in_the_batch_size_check():
    # 8 envs x 50 steps: per_env trains on 336 rows of a deployment (ordered: 340), so a
    # minibatch of 338 fits the ordered split only
    base = config_lib.load_config("test")
    config_lib.validate(config_lib.apply_overrides(base, ["dynamics.batch_size=338"]))
    cfg = config_lib.apply_overrides(base, ["dynamics.batch_size=338",
                                            "dynamics.val_split=per_env"])
    with pytest.raises(config_lib.ConfigError, match=r"dynamics.batch_size \(338\).*336 rows"):
        config_lib.validate(cfg)
