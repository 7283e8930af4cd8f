"""What ``bremen train`` runs by default: the ``quick`` HalfCheetah run with five measured fixes.

The sizes are ``quick``'s (5 deployments x 16K real steps, 3 members of 200x200, a 64x64 policy,
3K BC steps, 100 TRPO iterations of 10K imagined transitions at H = 100). The algorithm is NOT the
original's: five settings differ, each an option whose faithful value ``quick`` keeps
(``bremen train --config quick`` is the original algorithm at this size):

* ``trpo.ratio_std='sampling'``: TRPO scores the imagined actions (likelihood ratio, KL, Fisher)
  under the distribution they were drawn from, mean + 0.1 * N(0, 1), not under the clone's own
  sigma at its floor e^-5 (the original), where the ratios reach 1e15-1e31;
* ``trpo.target_kl=0.1``: the paper's delta (``quick``'s 0.5 makes up for the floor-sigma step);
* ``trpo.kl_budget=10``: no more TRPO updates once the policy's mean KL to the clone exceeds 10;
* ``imagine.penalty='disagreement'``, ``penalty_coef=1``: imagined rewards minus the ensemble's
  disagreement (MOPO-style; the original has no penalty);
* ``dynamics.restore_best=True``, ``max_epochs=200``, ``patience=20``: the ensemble keeps its
  best-validation weights (the original keeps the last ones) and may train longer.

Measured (``python -m experiments.learning_curves --protocol quick``: halfcheetah, 10
deterministic episodes per evaluation, this config is the variant
``bremen_sampling_kl01_budget10_dis1_fit``; ``tests/test_config.py`` checks the equality), return
after the 5th deployment, mean +- std over seeds:

* ``quick`` (faithful), seeds 0-4: 638.2 +- 409.3, 0 of 5 seeds >= 1,500; seeds 5-9:
  1,074.3 +- 554.1, 2 of 5; pooled 0-9: 856.2 +- 513.6, 2 of 10, deployment 2 above
  deployment 1 in 10 of 10;
* this config, seeds 0-4: 1,568.6 +- 1,283.9, 3 of 5 >= 1,500, deployment 2 above deployment 1
  in 5 of 5; seeds 5-9 (not used to choose it): 1,269.9 +- 1,165.6, 2 of 5, 5 of 5; pooled 0-9:
  1,419.2 +- 1,166.7, 5 of 10, 10 of 10.

So mean, median (1,418 vs 812) and seeds reaching 1,500 are higher than the faithful config's,
by 1.4 standard errors (not significant), and the spread is wider (seed 1 ends at 6). The
issue's target of >= 1,500 in 4 of 5 seeds is not met. README ("`bremen train` results") has
every variant that was tried.
"""

from bremen_jax.configs import quick


def get_config():
    c = quick.get_config()
    c.trpo.ratio_std = "sampling"
    c.trpo.target_kl = 0.1
    c.trpo.kl_budget = 10.0
    c.imagine.penalty = "disagreement"
    c.imagine.penalty_coef = 1.0
    c.dynamics.restore_best = True
    c.dynamics.max_epochs = 200
    c.dynamics.patience = 20
    return c
