"""What ``bremen train`` runs by default: the ``quick`` HalfCheetah run, four measured fixes, twice
the real batch and the original's early-stopping patience.

The sizes are ``quick``'s (5 deployments, 3 members of 200x200, a 64x64 policy, 3K BC steps, 100
TRPO iterations of 10K imagined transitions at H = 100) except the real batch: 32K steps per
deployment (``quick``: 16K), 160K in all, and the ensemble's early-stopping patience: 20 epochs,
the original's (``quick`` halves it to 10 to save time). The algorithm is NOT the original's: four
settings differ, each an option whose faithful value ``quick`` keeps (``bremen train --config
quick`` is the original algorithm at 5 x 16K):

* ``trpo.ratio_std='sampling'``: TRPO scores the imagined actions (likelihood ratio, KL, Fisher)
  under the distribution they were drawn from, mean + 0.1 * N(0, 1), not under the clone's own
  sigma at its floor e^-5 (the original), where the ratios reach 1e15-1e31;
* ``trpo.target_kl=0.1``: the paper's delta (``quick``'s 0.5 makes up for the floor-sigma step);
* ``trpo.kl_budget=10``: no more TRPO updates once the policy's mean KL to the clone exceeds 10;
* ``imagine.penalty='disagreement'``, ``penalty_coef=1``: imagined rewards minus the ensemble's
  disagreement (MOPO-style; the original has no penalty);
* ``deploy.batch_size=32000``: twice the real data per deployment (the paper collects 200K);
* ``dynamics.patience=20`` (since 2026-12-06): the original's patience. With 10 a member stops
  after two validation checks (every 5 epochs) without a new best; in the seeds whose deployment 2
  did not learn the fits stopped at epochs 11-16 (every other seed ran 56-100 epochs in
  deployment 1). About 20% more wall time (the 5-seed sweep: 2,858 s against 2,410 s).

Measured (``python -m experiments.learning_curves --protocol quick_b32k``: halfcheetah, 10
deterministic episodes per evaluation; this config is the variant
``bremen_sampling_kl01_budget10_dis1_b32k_p20``, ``tests/test_config.py`` checks the equality),
return after the 5th deployment:

* this config (2026-12-06), seeds 0-4: 2,662.6 +- 933.8, 5 of 5 seeds >= 1,500, deployment 2
  above deployment 1 in 5 of 5; seeds 10-14: 2,798.4 +- 1,734.3, 4 of 5, 5 of 5; pooled over
  these 10: 2,730.5 +- 1,315.1, 9 of 10, 10 of 10 (every five-seed draw of them meets both
  halves of issue 11's default-train target). The rule fixed before it ran (more five-seed draws
  meeting both halves than the config below, and a pooled mean not below it on the same seeds)
  adopted it. Seeds 5-9, run after: 2,217.3 +- 1,511.1, 3 of 5, 4 of 5; pooled 0-14: 2,559.4 +-
  1,351.6, 12 of 15, 14 of 15, 59% of five-seed draws meet both halves (the config below: 17%);
* the same without the patience change (the default from 2026-12-04 to 12-06, variant
  ``bremen_sampling_kl01_budget10_dis1_b32k``), seeds 0-4: 2,245.2 +- 774.4, 4 of 5 seeds
  >= 1,500, deployment 2 above deployment 1 in 4 of 5; seeds 5-9: 2,290.3 +- 970.8, 4 of 5, 4
  of 5; seeds 10-14: 1,906.4 +- 1,227.0, 4 of 5, 4 of 5; pooled 0-14: 2,147.3 +- 949.8, 12 of
  15, 12 of 15 (seeds 0-4 and 10-14: 2,075.8 +- 983.6, 8 of 10, 8 of 10; 36 of 252 draws);
* the decaying KL budget (variant ``bremen_sampling_kl01_budget10to5_dis1_b32k_i20k``: the
  previous default with ``imagine.batch_size=20000`` and ``trpo.kl_budget_decay=0.8409``), pooled
  0-14: 2,100.8 +- 821.0, 11 of 15, 13 of 15; it meets both halves of the target on 37% of the
  5-seed draws (the previous default 17%), but its mean is 46 below the previous default's (0.14
  standard errors) and the rule written down before seeds 10-14 ran required it not to be;
* the default before it (2026-12-03; the same four fixes at 16K plus best-epoch ensemble weights
  fitted up to 200 epochs, variant ``bremen_sampling_kl01_budget10_dis1_fit``), pooled 0-9:
  1,419.2 +- 1,166.7, 5 of 10, 10 of 10;
* ``quick`` (faithful, 5 x 16K), pooled 0-9: 856.2 +- 513.6, 2 of 10, 10 of 10;
* this config with the paper's ``imagine.horizon=250`` (variant ``..._p20_h250``, 2026-12-06/07),
  pooled 0-19: 3,456.2 +- 1,579.9, 19 of 20, 18 of 20 (this config over the same seeds:
  2,666.7 +- 1,443.0, 16 of 20, 19 of 20); a higher mean (+790, 1.65 standard errors) and
  above Brax SAC's 3,114.3, but 55% of five-seed draws meet both halves of the target against
  63%, and the rule written before its seeds ran required more: not adopted.

Without the patience change, issue 11's default-train target was met in its first half on all
three seed sets and missed in its second (seeds 1, 8 and 12: 42 -> 37, 61 -> -50 and -1 -> -40;
deployment 1 learns from uniform-random data and stays at the clone's level). With the
best-epoch fit options at 32K it ended lower (1,566.7 +- 1,034.8, seeds 0-4).
README ("`bremen train` results") has the bottom lines, docs/results/learning.md every variant
that was tried.
"""

from bremen_jax.configs import quick


def get_config():
    c = quick.get_config()
    c.trpo.ratio_std = "sampling"
    c.trpo.target_kl = 0.1
    c.trpo.kl_budget = 10.0
    c.imagine.penalty = "disagreement"
    c.imagine.penalty_coef = 1.0
    c.deploy.batch_size = 32_000
    c.dynamics.patience = 20
    return c
