"""Normalised scores: hand-computed arithmetic, pinned references, clear errors."""

import numpy as np
import pytest

from bremen_jax.datasets import behavior_policies, scores

REFS = {"halfcheetah": (-300.0, 2700.0), "flat": (10.0, 10.0)}


@pytest.fixture
def fake_references(monkeypatch):
    def reference_returns(task):
        if task not in REFS:
            raise KeyError(f"no references for {task!r} in references.json")
        return REFS[task]

    monkeypatch.setattr(behavior_policies, "reference_returns", reference_returns)


def test_hand_numbers(fake_references):
    # 100 * (R - (-300)) / (2700 - (-300)) = (R + 300) / 30
    assert scores.normalized_score("halfcheetah", 1200.0) == pytest.approx(50.0)
    assert scores.normalized_score("halfcheetah", -300.0) == pytest.approx(0.0)
    assert scores.normalized_score("halfcheetah", 2700.0) == pytest.approx(100.0)
    assert scores.normalized_score("halfcheetah", -600.0) == pytest.approx(-10.0)
    assert scores.reference_returns("halfcheetah") == (-300.0, 2700.0)


def test_arrays(fake_references):
    out = scores.normalized_scores("halfcheetah", np.array([[0.0, 300.0], [3000.0, np.nan]]))
    assert out.dtype == np.float64 and out.shape == (2, 2)
    np.testing.assert_allclose(out[0], [10.0, 20.0])
    assert out[1, 0] == pytest.approx(110.0) and np.isnan(out[1, 1])


def test_explicit_references_need_no_module():
    assert scores.normalized_score("any", 7.0, references=(2.0, 12.0)) == pytest.approx(50.0)
    np.testing.assert_allclose(scores.normalize([2.0, 12.0], 2.0, 12.0), [0.0, 100.0])


def test_errors(fake_references):
    with pytest.raises(ValueError, match="no reference returns pinned for task 'walker2d'"):
        scores.normalized_score("walker2d", 1.0)
    with pytest.raises(ValueError, match="degenerate reference returns for task 'flat'"):
        scores.normalized_score("flat", 1.0)
    with pytest.raises(ValueError, match="R_expert=1.0 must be greater than R_random=5.0"):
        scores.normalized_score("x", 1.0, references=(5.0, 1.0))
    with pytest.raises(ValueError, match="must be finite"):
        scores.normalized_scores("x", [1.0], references=(0.0, np.inf))
    with pytest.raises(ValueError, match="return must be finite"):
        scores.normalized_score("halfcheetah", float("nan"))
    with pytest.raises(ValueError, match="return must be a number"):
        scores.normalized_score("halfcheetah", "fast")
    with pytest.raises(ValueError, match="task must be a non-empty task name"):
        scores.reference_returns("")
