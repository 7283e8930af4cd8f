"""What ``bremen train`` runs by default: the ``quick`` HalfCheetah run, four measured fixes, twice
the real batch, the original's early-stopping patience, and the paper's imagined horizon with a
100-step warm-up.

The sizes are ``quick``'s (5 deployments, 3 members of 200x200, a 64x64 policy, 3K BC steps, 100
TRPO iterations of 10K imagined transitions) except: the real batch, 32K steps per deployment
(``quick``: 16K), 160K in all; the ensemble's early-stopping patience, 20 epochs, the original's
(``quick`` halves it to 10 to save time); and the imagined horizon, the paper's H = 250 (``quick``
cuts it to 100), capped at 100 steps in deployments 1 and 2. The algorithm is NOT the original's:
five settings differ, each an option whose faithful value ``quick`` keeps (``bremen train
--config quick`` is the original algorithm at 5 x 16K, H = 100):

* ``trpo.ratio_std='sampling'``: TRPO scores the imagined actions (likelihood ratio, KL, Fisher)
  under the distribution they were drawn from, mean + 0.1 * N(0, 1), not under the clone's own
  sigma at its floor e^-5 (the original), where the ratios reach 1e15-1e31;
* ``trpo.target_kl=0.1``: the paper's delta (``quick``'s 0.5 makes up for the floor-sigma step);
* ``trpo.kl_budget=10``: no more TRPO updates once the policy's mean KL to the clone exceeds 10;
* ``imagine.penalty='disagreement'``, ``penalty_coef=1``: imagined rewards minus the ensemble's
  disagreement (MOPO-style; the original has no penalty);
* ``imagine.warmup_horizon=100``, ``imagine.warmup_deployments=2`` (since 2026-12-07): imagined
  paths end after 100 steps in deployments 1-2 (the scan keeps its 250 steps; 80% of the batch
  enters the update there), while the model has seen little but random data; the original uses
  H in every deployment. At H = 250 without it, deployment 1's model (fitted on uniform-random
  data) was exploited (imagined return -29,368 +- 48,538 at the last iteration, seeds 0-4) and
  deployment 2 fell below deployment 1 in 2 of 20 seeds;
* ``deploy.batch_size=32000``: twice the real data per deployment (the paper collects 200K);
* ``dynamics.patience=20`` (since 2026-12-06): the original's patience. With 10 a member stops
  after two validation checks (every 5 epochs) without a new best; in the seeds whose deployment 2
  did not learn the fits stopped at epochs 11-16 (every other seed ran 56-100 epochs in
  deployment 1). About 20% more wall time (the 5-seed sweep: 2,858 s against 2,410 s);
* ``imagine.horizon=250`` (since 2026-12-07): the paper's horizon (not a deviation: ``quick``'s
  100 is the CPU cut). TRPO's paths from reset states then reach the running gait a real
  1,000-step episode is mostly made of.

Measured (``python -m experiments.learning_curves --protocol quick_b32k``: halfcheetah, 10
deterministic episodes per evaluation; this config is the variant
``bremen_sampling_kl01_budget10_dis1_b32k_p20_h250w100``, ``tests/test_config.py`` checks the
equality), return after the 5th deployment:

* this config (2026-12-07), seeds 0-4: 3,002.5 +- 759.4, 5 of 5 seeds >= 1,500, deployment 2 above
  deployment 1 in 5 of 5; seeds 5-9: 3,476.4 +- 1,270.9, 5 of 5, 5 of 5; seeds 10-14: 2,454.5 +-
  1,528.1, 4 of 5, 5 of 5; seeds 15-19: 2,708.9 +- 1,024.1, 4 of 5, 5 of 5; pooled 0-19: 2,910.6
  +- 1,151.5, 18 of 20 >= 1,500, 20 of 20 rising, 14,688 of 15,504 five-seed draws (95%) meet both
  halves of issue 11's default-train target (paired with the config below: +243.9 +- 499.4
  standard error, higher in 11 of 20). The rule written before any of its runs (more five-seed
  draws of seeds 0-19 meeting both halves than the config below, 63%, and a pooled mean not below
  its 2,666.7) adopted it;
* the default of 2026-12-06 to 12-07 (the same without the horizon change, variant
  ``bremen_sampling_kl01_budget10_dis1_b32k_p20``), seeds 0-19: 2,666.7 +- 1,443.0, 16 of 20
  >= 1,500, 19 of 20 rising, 63% of five-seed draws meet both halves;
* H = 250 without the warm-up (variant ``..._p20_h250``), seeds 0-19: 3,456.2 +- 1,579.9, 19 of
  20, 18 of 20 (deployment 2 fell in seeds 1 and 10), 55% of draws: not adopted;
* the default of 2026-12-04 to 12-06 (patience 10, variant
  ``bremen_sampling_kl01_budget10_dis1_b32k``), pooled 0-14: 2,147.3 +- 949.8, 12 of 15, 12 of
  15; the decaying KL budget (``..._budget10to5_dis1_b32k_i20k``), pooled 0-14: 2,100.8 +- 821.0,
  11 of 15, 13 of 15, not adopted;
* the default before them (2026-12-03; the same four fixes at 16K plus best-epoch ensemble
  weights fitted up to 200 epochs, variant ``bremen_sampling_kl01_budget10_dis1_fit``), pooled
  0-9: 1,419.2 +- 1,166.7, 5 of 10, 10 of 10;
* ``quick`` (faithful, 5 x 16K), pooled 0-9: 856.2 +- 513.6, 2 of 10, 10 of 10.

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
    c.imagine.horizon = 250
    c.imagine.warmup_horizon = 100
    c.imagine.warmup_deployments = 2
    c.deploy.batch_size = 32_000
    c.dynamics.patience = 20
    return c
