"""Learning curves: BREMEN (recursive, seeds vmapped) vs Brax SAC and PPO at equal real samples.

``python -m experiments.learning_curves --protocol cpu [--tasks halfcheetah,hopper]
[--algorithms bremen,bremen_sampling,sac,ppo] [--seeds 5] [--first-seed 0] [--tune] [--out FILE]
[--merge]
[--workdir DIR] [--checkpoint-every K] [--resume]``

For each task of the protocol:

* **BREMEN**: the protocol's config, all seeds in one compiled program through the sweep
  machinery (:func:`bremen_jax.sweep.run_sweep` with ``{"seeds": [...]}``); its curve is the
  deterministic ``eval/return_mean`` after each deployment's last TRPO chunk, at ``k x
  deploy.batch_size`` real steps (the run's ``env_steps``; evaluation episodes are not counted).
* **BREMEN variants** (:data:`BREMEN_VARIANTS`): the same with a fix switched on, e.g.
  ``bremen_sampling`` = ``trpo.ratio_std='sampling'``; each is its own curve.
* **SAC** and **PPO** (:mod:`experiments.learning_baselines`): brax's train functions on the same
  task object (``make_task(task, backend, episode_length)``), for the same total real steps,
  evaluated at the same sample counts; one seed after another. ``--tune`` runs each baseline's
  small grid and reports the best point by mean final return (every point is kept in
  ``config.tuning``).

Every policy is evaluated with :func:`bremen_jax.envs.acting.make_evaluator` (deterministic,
``--episodes`` episodes, default 10). Outputs (:mod:`experiments.learning_report`): the JSON
(default ``benchmarks/results/learning-<device>-<date>.json``), a markdown table, a PNG per task and
the return-vs-deployments figure. The JSON is rewritten after every (task, algorithm), so a partial
result survives an interruption; ``--checkpoint-every K`` checkpoints the BREMEN sweeps every K
deployments and ``--resume`` (same flags, same ``--workdir``) continues them
(``docs/sweeps.md``, "Interruptions").

Protocols (:data:`PROTOCOLS`): ``cpu`` (halfcheetah, hopper, walker2d, ant; 5 seeds; about two
hours of a 2-core CPU when run alone, see :data:`CPU_ESTIMATE`), ``quick`` (``bremen train``'s
default config, halfcheetah 5 x 16K, 5 seeds) and ``tiny`` (inverted_pendulum, 2
seeds, a minute or two: the test).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from bremen_jax.cli.common import CliError, add_sweep_checkpoint_flags, check_checkpoint_every
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors

# BREMEN variants: the protocol's config plus these overrides (the fixes of issue 11, each
# measured against the faithful "bremen" over the same seeds).
_SAMPLING = ["trpo.ratio_std='sampling'"]
# sampling moves the mean ~15x further per unit of KL: the paper's delta
_KL01 = _SAMPLING + ["trpo.target_kl=0.1"]
_M5 = ["dynamics.num_members=5", "dynamics.num_active=5"]
_DIS1 = ["imagine.penalty='disagreement'", "imagine.penalty_coef=1.0"]
# bremen train's default until 2026-12-06 (configs/quick_tuned.py, now with dynamics.patience=20
# and H = 250 with a 100-step warm-up: the _b32k_p20_h250w100 variant below) as overrides of quick
_TUNED = _KL01 + _DIS1 + ["trpo.kl_budget=10.0", "deploy.batch_size=32000"]
# ... with twice the imagined transitions per TRPO iteration (the base of the i20k variants)
_I20K = _TUNED + ["imagine.batch_size=20000"]
# bremen train's default since 2026-12-07 (quick_tuned; the _b32k_p20_h250w100 variant below)
_DEFAULT = _TUNED + ["dynamics.patience=20", "imagine.horizon=250", "imagine.warmup_horizon=100",
                     "imagine.warmup_deployments=2"]
BREMEN_VARIANTS = {"bremen": [],
                   # the original at twice the real batch (5 x 32K): the equal-samples baseline
                   # of bremen train's default (quick_tuned = _budget10_dis1_b32k_p20_h250w100)
                   "bremen_b32k": ["deploy.batch_size=32000"],
                   "bremen_sampling": _SAMPLING,
                   "bremen_sampling_kl01": _KL01,
                   # half that step (the paper's hopper/walker2d delta): steadier chunk to chunk?
                   "bremen_sampling_kl005": _SAMPLING + ["trpo.target_kl=0.05"],
                   # ... and imagined rollouts 5x longer (H = 500, 20 of them per iteration): at
                   # the cpu protocol's H = 100 hopper's imagined return caps at ~H steps alive
                   "bremen_sampling_kl01_long": _KL01 + ["imagine.horizon=500",
                                                         "imagine.batch_size=10000"],
                   # ... and the original's explicit KL-to-behaviour reward penalty: within a
                   # deployment the policy walks ever further from the clone (KL under its
                   # e^-5 sigma: 2e3-3e4 at the end) and peaks of 2,000+ collapse; 1e-4 x 5e3
                   # = 0.5 per step against halfcheetah's 2-5 per step at those peaks
                   "bremen_sampling_kl01_pen": _KL01 + ["trpo.kl_penalty=1e-4"],
                   # ... and ME-TRPO's policy validation: a chunk whose policy does not improve
                   # the imagined return under >= 70% of the members on their own is rolled back
                   # (the collapses above are the model being exploited)
                   "bremen_sampling_kl01_val": _KL01 + ["trpo.validation='members'"],
                   # ... and a budget on the total distance from the clone within a deployment:
                   # in the _val runs the policy walked to a KL (under sigma 0.1) of 30-120 per
                   # deployment; returns often peaked below ~10-15 and collapsed past ~25
                   "bremen_sampling_kl01_budget10": _KL01 + ["trpo.kl_budget=10.0"],
                   # ... with the paper's 5 members (quick: 3): with the budget, seeds were still
                   # lost within a deployment while the imagined return rose (exploitation of
                   # errors the 3 members share); more members average more of them out
                   "bremen_sampling_kl01_budget10_m5": _KL01 + _M5 + ["trpo.kl_budget=10.0"],
                   "bremen_sampling_kl01_m5": _KL01 + _M5,
                   "bremen_sampling_kl01_budget20_m5": _KL01 + _M5 + ["trpo.kl_budget=20.0"],
                   # ... and MOPO-style pessimism: the imagined reward minus lambda x the
                   # members' disagreement on the next state (imagine.penalty), so the policy is
                   # not paid for going where the model is unreliable
                   "bremen_sampling_kl01_dis1": _KL01 + _DIS1,
                   "bremen_sampling_kl01_budget10_dis1": _KL01 + _DIS1 + ["trpo.kl_budget=10.0"],
                   # ... three times the penalty (lambda 1 still lost 150-260 within deployments)
                   "bremen_sampling_kl01_dis3": _KL01 + ["imagine.penalty='disagreement'",
                                                         "imagine.penalty_coef=3.0"],
                   # ... lambda 1 and the budget at twice the real batch (5 x 32K): with 16K the
                   # seeds that do not learn in deployment 2 (9 -> -2, 65 -> 50, 49 -> 12) learn
                   # in deployment 3, once the model has ~48K steps; does more data per
                   # deployment move that learning earlier and lift the end point?
                   "bremen_sampling_kl01_budget10_dis1_b32k": _TUNED,
                   # ... lambda 1 and the budget at 16K, with a better-fitted model: in deployment
                   # 1 (16K uniform-random steps) the policy moves to the budget while the real
                   # return stays at the clone's (45 +- 21 after, 49 +- 20 before); the ensemble
                   # keeps its last weights after early stopping (original). Restore the best
                   # validation weights and fit twice as long (200 epochs, patience 20)
                   "bremen_sampling_kl01_budget10_dis1_fit": _KL01 + _DIS1 + [
                       "trpo.kl_budget=10.0", "dynamics.restore_best=True",
                       "dynamics.max_epochs=200", "dynamics.patience=20"],
                   # ... and twice the budget: with it at 10, 40-77% of a deployment's iterations
                   # are skipped once the policy reaches it; does the better-fitted, penalised
                   # model let the policy go further without collapsing?
                   "bremen_sampling_kl01_budget20_dis1_fit": _KL01 + _DIS1 + [
                       "trpo.kl_budget=20.0", "dynamics.restore_best=True",
                       "dynamics.max_epochs=200", "dynamics.patience=20"],
                   # ... the better-fitted model alone on the best end point (consistent
                   # ratios at delta 0.1: 3 of 5 >= 1,500, deployment 2 > 1 in 4 of 5): the fit
                   # options lifted deployment 2 above 1 in every seed with lambda 1 and the budget
                   "bremen_sampling_kl01_fit": _KL01 + [
                       "dynamics.restore_best=True", "dynamics.max_epochs=200",
                       "dynamics.patience=20"],
                   # ... the budget-10 fit variant with twice the penalty: with lambda 1 it still
                   # lost 175 +- 374 and 218 +- 446 within deployments 3 and 5 (lambda 3 without
                   # the fit options was too pessimistic)
                   "bremen_sampling_kl01_budget10_dis2_fit": _KL01 + [
                       "imagine.penalty='disagreement'", "imagine.penalty_coef=2.0",
                       "trpo.kl_budget=10.0", "dynamics.restore_best=True",
                       "dynamics.max_epochs=200", "dynamics.patience=20"],
                   # ... and between the two: lambda 2 kept every deployment's losses at 27-50
                   # but left two seeds below 140 (imagined gains of 12-15 early on)
                   "bremen_sampling_kl01_budget10_dis15_fit": _KL01 + [
                       "imagine.penalty='disagreement'", "imagine.penalty_coef=1.5",
                       "trpo.kl_budget=10.0", "dynamics.restore_best=True",
                       "dynamics.max_epochs=200", "dynamics.patience=20"],
                   # ... the budget-10 fit variant with imagined rollouts started from states of
                   # the data (MBPO/MOPO-style) rather than from the reset distribution: seeds
                   # that do not take off by deployment 3 end low in every variant; rollouts
                   # from the states the data visited train the policy where the model was fitted
                   "bremen_sampling_kl01_budget10_dis1_fit_ds": _KL01 + _DIS1 + [
                       "trpo.kl_budget=10.0", "dynamics.restore_best=True",
                       "dynamics.max_epochs=200", "dynamics.patience=20",
                       "imagine.start_states='dataset'"],
                   # ... the budget-10 fit variant at twice the real batch (5 x 32K): the issue
                   # asks the default train for >= 1,500 in 4 of 5 seeds and deployment 2 above
                   # deployment 1 in every seed, not for a sample budget; _b32k met the first
                   # half (4 of 5) and missed the second by one seed (42 -> 37), the fit options
                   # met the second half at 16K (5 of 5)
                   "bremen_sampling_kl01_budget10_dis1_fit_b32k": _KL01 + _DIS1 + [
                       "trpo.kl_budget=10.0", "dynamics.restore_best=True",
                       "dynamics.max_epochs=200", "dynamics.patience=20",
                       "deploy.batch_size=32000"],
                   # ... the budget-10 fit variant with half the budget: on seeds 5-9 it reached
                   # 2,151 +- 266 after deployment 4 and then lost 644 +- 508 of real return
                   # within deployment 5 (the clone held 2,201 +- 336); budget 20 lost 470-628
                   # within deployments 4-5 against 21-218 at 10. Does 5 keep the late policies?
                   "bremen_sampling_kl01_budget5_dis1_fit": _KL01 + _DIS1 + [
                       "trpo.kl_budget=5.0", "dynamics.restore_best=True",
                       "dynamics.max_epochs=200", "dynamics.patience=20"],
                   # ... the budget-10 fit variant with half the imagined rollouts started from
                   # states of the latest batch (imagine.start_states='reset_latest'): with H =
                   # 100 from resets only, TRPO never sees steps 100-1000 of an episode, and the
                   # seeds lost in deployment 5 spread their 10 episodes by a std of 230-1,201
                   # (23-74 for those that held): late-episode failures the imagination never
                   # showed. All-data starts (_ds) drew half of deployment 2's starts from the
                   # random policy's states; the latest batch holds the deployed policy's.
                   "bremen_sampling_kl01_budget10_dis1_fit_rl": _KL01 + _DIS1 + [
                       "trpo.kl_budget=10.0", "dynamics.restore_best=True",
                       "dynamics.max_epochs=200", "dynamics.patience=20",
                       "imagine.start_states='reset_latest'"],
                   # ... the H = 500 variant with twice the TRPO iterations per deployment (cpu
                   # protocol: 40 -> 80): on hopper it plateaus at ~275 from deployment 5 on, the
                   # clone and TRPO's result equal (275.9 -> 279.5, 277.0 -> 273.7, ...) while the
                   # model gap is small (13-50): the optimiser, not the model, looks like the limit
                   "bremen_sampling_kl01_long_it80": _KL01 + [
                       "imagine.horizon=500", "imagine.batch_size=10000", "trpo.iterations=80",
                       "trpo.chunk=80"],
                   # ... (measured: 252.4 +- 68.1 against 322.1 with 40: the model gap grew to
                   # 52-279, the extra iterations exploit the model.) So the H = 500 variant with
                   # the disagreement penalty (lambda 1): not paid where the members disagree
                   "bremen_sampling_kl01_long_dis1": _KL01 + _DIS1 + [
                       "imagine.horizon=500", "imagine.batch_size=10000"],
                   # ... (measured: 250.4 +- 34.4, steady but slow.) Better gradients instead of
                   # more steps: the H = 500 variant with an MLP value baseline (the original's
                   # linear time-feature baseline fits hopper's falls poorly) ...
                   "bremen_sampling_kl01_long_mlp": _KL01 + [
                       "imagine.horizon=500", "imagine.batch_size=10000", "trpo.baseline='mlp'"],
                   # (measured on hopper: 312.7 +- 101.0) ... or with twice the imagined
                   # transitions per iteration (hopper: 402.1 +- 218.8, seeds 5-9 437.6 +- 189.7;
                   # SAC pooled over 0-9 357.8 +- 102.5)
                   "bremen_sampling_kl01_long_b20k": _KL01 + [
                       "imagine.horizon=500", "imagine.batch_size=20000"],
                   # ... consistent ratios at delta 0.1 (the best pooled end point) with each
                   # imagined path following one member throughout (imagine.member_sampling=
                   # per_rollout, PETS's TS-inf) instead of one member drawn per step for all
                   # paths: a policy cannot ride one member's error for more than a step under
                   # per_step, but every path sees the same member at a step, so one member's
                   # error moves the whole batch's gradient
                   # (measured 2026-12-03, seeds 0-4: 947.3 +- 875.6 vs 1,840.5 per step: not kept)
                   "bremen_sampling_kl01_pr": _KL01 + ["imagine.member_sampling='per_rollout'"],
                   # ... bremen train's default (_budget10_dis1_b32k) with twice the imagined
                   # transitions per TRPO iteration (200 rollouts of H = 100, not 100): its
                   # deployment 2 fails to rise above deployment 1 in 2 of 10 seeds (42 -> 37,
                   # 61 -> -50) while the other seeds gain 33-1,064, i.e. whether deployment 2
                   # learns is luck of the seed; a less noisy policy gradient (as on hopper at
                   # H = 500, _long_b20k) should make its progress less seed-dependent
                   # (measured 2026-12-05, seeds 0-4: deployment 2 > 1 in 5 of 5, 543.7 +- 328.5
                   # after it; 2,279.3 +- 1,555.1 at the end, 3 of 5 >= 1,500: not adopted)
                   "bremen_sampling_kl01_budget10_dis1_b32k_i20k": _I20K,
                   # ... and half the KL budget: i20k's losses are late (deployment 5 lost
                   # 337.9 +- 313.4 between its best chunk and its last on seeds 0-4, seed 9
                   # fell 3,590 -> 76), while its early deployments learn in every seed; budget
                   # 5 at 16K held the late policies but slowed the start. The faster start of
                   # the larger imagined batch may make room for the tighter budget.
                   "bremen_sampling_kl01_budget5_dis1_b32k_i20k": _I20K + ["trpo.kl_budget=5.0"],
                   # (measured 2026-12-05, seeds 0-4: 2,037.9 +- 598.9, 4 of 5 >= 1,500, no seed
                   # lost within deployments 4-5, but deployment 2 above 1 in 3 of 5: 73 -> 59,
                   # 52 -> 32, as budget 5 at 16K.) So the budget where each half of the target
                   # needs it: 10 in deployment 1 (as i20k, which learned in deployment 2 in 9 of
                   # 10 seeds), halved by deployment 5 (trpo.kl_budget_decay = 0.5^(1/4): 10, 8.4,
                   # 7.1, 5.9, 5.0); the later clones are of better policies, with more to lose
                   # (measured 2026-12-05: seeds 0-4 2,431.9 +- 254.4, 5/5, 5/5; seeds 5-9
                   # 1,659.6 +- 757.5, 3/5, 5/5; pooled 2,045.7 +- 670.4, 8/10, 10/10, 78% of
                   # 5-seed sets meet both halves; mean below quick_tuned's: not adopted yet;
                   # 2026-12-06, seeds 10-14: 2,210.8 +- 1,151.2, 3/5, 3/5, against quick_tuned's
                   # 1,906.4 +- 1,227.0, 4/5, 4/5 on the same seeds; pooled 0-14: 2,100.8 +- 821.0,
                   # 11/15, 13/15, 37% of 5-seed sets, against quick_tuned's 2,147.3 +- 949.8,
                   # 12/15, 12/15, 17%: the mean 46 lower (0.14 SE), so not adopted by the rule)
                   "bremen_sampling_kl01_budget10to5_dis1_b32k_i20k": _I20K + [
                       "trpo.kl_budget_decay=0.8409"],
                   # ... bremen train's default with the original's early-stopping patience (20
                   # epochs; quick halves it to 10, i.e. a member stops after two validation
                   # checks without a new best). In the seeds where deployment 2 did not learn
                   # (seed 12: -1 -> -40) the fit of deployment 1 stopped at epoch 16 (best 5,
                   # validation MSE 0.16 vs 0.05-0.07) and deployment 2's at 11 (best 0); seed 2
                   # stopped at 16, 11, 11 with validation MSE 0.6-2.0, every other seed ran
                   # 56-100 epochs in deployment 1
                   # (measured 2026-12-06: seeds 0-4 2,662.6 +- 933.8, 5/5 >= 1,500, deployment 2
                   # above 1 in 5/5; seeds 10-14 2,798.4 +- 1,734.3, 4/5, 5/5; pooled over these
                   # 10: 2,730.5 against _b32k's 2,075.8 on the same seeds, 252 of 252 five-seed
                   # sets meet both halves against 36: bremen train's default 2026-12-06 to 07)
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20": _TUNED + [
                       "dynamics.patience=20"],
                   # ... and every env's trajectories in the training split: the ordered
                   # split of a batch stored env by env validates on the last ~2.4 of 16 envs
                   # (~5 episodes). Uniform-random halfcheetahs flip and spin (mean root angle
                   # -1.2 to 2.7 rad per env); seed 2's deployment-1 batch has its only
                   # backward-spinning env (15) in validation, so 12 of its 15 member
                   # fits stop at 21-36 epochs (validation MSE 0.2-2.6), and its deployment-1
                   # model predicts a fresh uniform-random batch with MSE 0.63-0.84 against
                   # 0.05 for the same data split per env (last 15% of every env's steps)
                   # (measured 2026-12-06, seeds 0-4: seed 2's fits now run 66-100 epochs at
                   # validation MSE 0.02-0.04, yet 2,453.6 +- 1,757.4, 3/5 >= 1,500, 4/5 rising,
                   # against the default's 2,662.6 +- 933.8, 5/5, 5/5: not adopted)
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20_pe": _TUNED + [
                       "dynamics.patience=20", "dynamics.val_split=per_env"],
                   # ... and the KL budget also measured on the latest real batch's states. The
                   # budget is otherwise measured on the imagined batch only: H = 100 steps from
                   # resets, while a real episode runs 1,000; the seeds lost in deployment 5
                   # lose their gait later in the episode (per-episode std 1,000-1,300), on
                   # states whose action change no budget watched (2026-12-06)
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20_klmax": _TUNED + [
                       "dynamics.patience=20", "trpo.kl_budget_states='max'"],
                   # (measured 2026-12-06, seeds 5-9: 2,997.0 +- 1,105.5, 5/5 >= 1,500, but
                   # deployment 2 above 1 in 3/5: on deployment 1's uniform-random batch the
                   # latest-batch KL binds at iteration 13-24 against 54. In deployments 2-5 the
                   # latest-batch KL was the smaller one (median 0.25-0.86 of the imagined):
                   # the guess above is refuted, the budget still binds on imagined states)
                   # ... so the latest batch counts only once a learned policy collected it
                   # (measured 2026-12-06 on seeds 0-19, paired with the default: identical in
                   # 10, 4 higher and 6 lower in the others, -121.0 +- 218.2: no effect)
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20_klml": _TUNED + [
                       "dynamics.patience=20", "trpo.kl_budget_states='max_learned'"],
                   # ... and the paper's imagined horizon H = 250 (quick cuts it to 100; the same
                   # 10K transitions per iteration, so 40 paths instead of 100). All four seeds
                   # below 1,500 lose their gait in deployment 5, while TRPO's imagined paths
                   # from reset states cover only the first 100 of a real episode's 1,000 steps,
                   # about the start-up; at 250 they reach the running gait the clone was
                   # deployed with. H = 500 lifted halfcheetah at 16K (the cpu protocol)
                   # (measured 2026-12-06, seeds 15-19: 3,801.1 +- 1,733.9, 5/5 >= 1,500, 5/5
                   # rising, deployment 5 above its clone in 4/5, against the default's 2,988.3,
                   # 4/5, 5/5: passes the first screen; pooled over seeds 0-19 (2026-12-07)
                   # 3,456.2 +- 1,579.9 against 2,666.7 +- 1,443.0, but deployment 2 fell below
                   # 1 in seeds 1 and 10: 55% of five-seed draws meet the target against 63%,
                   # so not adopted under the rule fixed before seeds 10-14 ran)
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20_h250": _TUNED + [
                       "dynamics.patience=20", "imagine.horizon=250"],
                   # ... with H = 100 in deployments 1 and 2 (imagine.warmup_horizon): at 250,
                   # deployment 1's model (fitted on uniform-random data) is exploited
                   # (imagined return -29,368 +- 48,538, seeds 0-4) and both seeds that did
                   # not rise fell in deployment 2, where the default (H = 100) rose in 20/20
                   # (measured 2026-12-07 on seeds 0-19: 2,910.6 +- 1,151.5, 18/20 >= 1,500,
                   # 20/20 rising, 95% of five-seed draws meet both halves against _p20's 63%:
                   # bremen train's default since 2026-12-07 by the rule written before its runs)
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20_h250w100": _DEFAULT,
                   # ... with the paper's 200-200 policy (quick cuts it to 64-64 for the CPU):
                   # SAC's 256-256 reaches 8-14K at 160K where BREMEN's best seeds stop near 5K,
                   # and the clone of deployment 5 loses 119 +- 93 of the deployed policy's return
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20_h250w100_pol200": _DEFAULT + [
                       "policy.hidden_sizes=(200, 200)"],
                   # ... with twice the KL budget: in the default the budget (not delta or the
                   # iteration count) sets how far each deployment moves (crossed at iteration
                   # 21-38 of 100, learning_details), so is it what holds it below SAC? No:
                   # seeds 0-4 (2026-12-07) 2,098.5 +- 905.7, paired -904 +- 576 against the
                   # default; deployment 5 exploits the model (imagined -13,555 +- 31,662)
                   "bremen_sampling_kl01_budget20_dis1_b32k_p20_h250w100": _DEFAULT + [
                       "trpo.kl_budget=20.0"],
                   # ... with the paper's 5 ensemble members (quick cuts them to 3 for the
                   # CPU): at 160K what stops BREMEN is the model, not TRPO's reach (the
                   # budget-20 screen above); more members give the disagreement penalty and
                   # the per-step member draw a better estimate of where the model is unsure
                   # (seeds 0-4, 2026-12-07: ahead after deployments 2-4, paired +447 +- 70,
                   # +1,016 +- 363, +519 +- 431, then 2,205.7 +- 998.4 at 160K, paired -797 +-
                   # 561: TRPO fell below its clone in 3 of 5 seeds in deployment 5; screen not
                   # passed; ~1.2-1.6x the wall)
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20_h250w100_m5": _DEFAULT + [
                       "dynamics.num_members=5", "dynamics.num_active=5"],
                   # ... with the original's 200-epoch cap on each ensemble fit (quick: 100): in
                   # the m5 screen every member fit of deployments 1-2 ran to the cap of 100
                   # with its best validation epoch at 75-95, i.e. still improving (seeds 0-4,
                   # 2026-12-07, deployments 1-3: 51.9, 743.5, 1,723.7 against the default's
                   # 3.0, 410.4, 1,064.8, but seed 2 fell from 79 to 41 in deployment 2: the
                   # screen's rule (every seed rising) not passed; the cap binds in deployment 1)
                   "bremen_sampling_kl01_budget10_dis1_b32k_p20_h250w100_e200": _DEFAULT + [
                       "dynamics.max_epochs=200"]}
ALGORITHMS = (*BREMEN_VARIANTS, "sac", "ppo")
DEFAULT_ALGORITHMS = ("bremen", "sac", "ppo")

# BREMEN at CPU size (quick-config style: the paper's networks and iteration counts are far
# beyond a 2-core CPU; see bremen_jax/configs/quick.py for why target_kl is 0.5). One TRPO chunk
# per deployment: BREMEN is evaluated after BC and after the deployment's last iteration only.
_CPU_BREMEN = [
    "dynamics.num_members=3", "dynamics.num_active=3", "dynamics.hidden_sizes=(200, 200)",
    "dynamics.batch_size=256", "dynamics.max_epochs=50", "dynamics.patience=10",
    "policy.hidden_sizes=(64, 64)", "bc.num_steps=2000", "imagine.horizon=100",
    "imagine.batch_size=5000", "trpo.target_kl=0.5", "trpo.iterations=40", "trpo.chunk=40",
    "deploy.num_envs=8", "eval.num_episodes=10"]


def _cpu_task(task: str, deployments: int, batch: int, ppo_batch: int) -> dict:
    """``deployments x batch`` real steps; PPO collects ``ppo_batch x 10 x 4`` steps per update
    (5 updates per BREMEN deployment)."""
    return {"config": task,
            "overrides": _CPU_BREMEN + [f"deploy.num_deployments={deployments}",
                                        f"deploy.batch_size={batch}"],
            "sac": {"min_replay_size": 1000},
            "ppo": {"num_minibatches": 4, "unroll_length": 10, "batch_size": ppo_batch}}


PROTOCOLS = {
    "cpu": {"seeds": [0, 1, 2, 3, 4], "episodes": 10, "tasks": {
        "halfcheetah": _cpu_task("halfcheetah", 5, 3_200, 16),
        "hopper": _cpu_task("hopper", 10, 1_600, 8),
        "walker2d": _cpu_task("walker2d", 10, 1_600, 8),
        "ant": _cpu_task("ant", 5, 3_200, 16)}},
    # `bremen train`'s own config (quick: halfcheetah, 5 x 16K real steps) over 5 seeds, 10
    # evaluation episodes (the default-train targets); SAC/PPO at those 80K steps.
    "quick": {"seeds": [0, 1, 2, 3, 4], "episodes": 10, "tasks": {
        "halfcheetah": {"config": "quick", "overrides": ["eval.num_episodes=10"],
                        "sac": {"min_replay_size": 1000},
                        "ppo": {"num_minibatches": 4, "unroll_length": 10}}}},
    # the same at `bremen train`'s budget (quick_tuned: 5 x 32K = 160K real steps), for the
    # baselines at the default's own sample count (BREMEN variants run here as under "quick"
    # with deploy.batch_size=32000, which the _b32k variants set anyway)
    "quick_b32k": {"seeds": [0, 1, 2, 3, 4], "episodes": 10, "tasks": {
        "halfcheetah": {"config": "quick",
                        "overrides": ["eval.num_episodes=10", "deploy.batch_size=32000"],
                        "sac": {"min_replay_size": 1000},
                        "ppo": {"num_minibatches": 4, "unroll_length": 10}}}},
    "tiny": {"seeds": [0, 1], "episodes": 10, "tasks": {
        "inverted_pendulum": {
            "config": "test",  # positional backend, 50-step episodes
            "overrides": ["eval.num_episodes=10"],  # test config: 2 deployments x 400 steps
            "sac": {"min_replay_size": 100, "hidden_sizes": (32, 32), "batch_size": 64},
            "ppo": {"num_envs": 4, "unroll_length": 10, "num_minibatches": 4,
                    "num_updates_per_batch": 2, "policy_hidden_sizes": (16, 16),
                    "value_hidden_sizes": (32, 32)}}}},
}
# The cpu protocol's wall time on an idle 2-core CPU, estimated (not measured: this machine was
# shared by 7 jobs) from the unit costs the quick benchmark suite measured
# (benchmarks/results/cpu-2core-2026-12-01-quick.md) and, for SAC, a FLOP count:
# * BREMEN per seed: collection 0.32 ms/step, ensemble fit 2.3 ms/minibatch step (<= 50 epochs
#   on the growing data), TRPO 0.08 s/iteration at 5K imagined, ~4 s per 10-episode evaluation,
#   BC 0.25 ms/step -> ~75 s (halfcheetah, ant) / ~140 s (hopper, walker2d; 10 deployments);
#   5 seeds vmapped (sweep scaling: ~linear in runs) + ~1.5 min compile -> ~40 min for 4 tasks;
# * SAC: one update of 256 x (2 Q + policy, 256-256) ~0.74 GFLOP -> ~10 ms at ~75 GFLOP/s, so
#   16K steps ~160 s + ~40 s compile/evaluations per seed -> 20 task-seeds ~67 min;
# * PPO: 16K env steps + 25-50 small updates + ~1 min compile per task -> ~10 min.
# Total ~2 h. Time `--tasks halfcheetah --algorithms sac --seeds 1` first (~3-4 min predicted)
# and rescale the batch sizes above if it is far off.
# Measured 2026-12-02 for halfcheetah alone, on the 2-core CPU shared with 1-3 other jobs: BREMEN
# 5 seeds vmapped 134 s compile + 638 s run; SAC 230-800 s per seed; PPO 42-700 s per seed
# (about 50 min for the task, vs ~30 min estimated for it above).
CPU_ESTIMATE = "about 2 h on an idle 2-core CPU (estimated from unit costs, see the comment)"


def _parse(argv) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m experiments.learning_curves",
                                description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="tiny")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the protocol's tasks")
    p.add_argument("--algorithms", default=",".join(DEFAULT_ALGORITHMS),
                   help=f"comma-separated, some of {','.join(ALGORITHMS)}")
    p.add_argument("--merge", action="store_true", help="add to the --out JSON if it exists "
                   "(its other tasks and algorithms are kept; the same ones are replaced)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the "
                   "protocol's; seeds first..first+n-1)")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0): "
                   "e.g. --first-seed 5 --seeds 5 checks a result on 5 seeds not yet looked at")
    p.add_argument("--episodes", type=int, default=None, help="evaluation episodes (default 10)")
    p.add_argument("--tune", action="store_true", help="run SAC/PPO's tuning grid; report best")
    p.add_argument("--grid", action="append", default=[], metavar="ALGO.FIELD=V1,V2",
                   help="with --tune: this axis instead of the built-in one (repeatable), e.g. "
                        "--grid sac.reward_scaling=5 --grid sac.updates_per_step=1")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                                               "learning-<device>-<date>.json)")
    p.add_argument("--workdir", default=None, help="BREMEN sweep directories (default "
                                                   "runs/learning-<time>)")
    add_sweep_checkpoint_flags(p, scope="BREMEN sweeps: ")
    return p.parse_args(argv)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=pathlib.Path(__file__).parent
                              ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name() -> str:
    import jax
    d = jax.devices()[0]
    return f"cpu{os.cpu_count()}" if d.platform == "cpu" else d.device_kind.replace(" ", "_")


def bremen_config(spec: dict):
    from bremen_jax import config as config_lib

    cfg = config_lib.apply_overrides(config_lib.load_config(spec["config"]), spec["overrides"])
    config_lib.validate(cfg)
    return cfg


def run_bremen(spec: dict, seeds, workdir: pathlib.Path, log=print,
               checkpoint_every: int | None = None, resume: bool = False) -> dict:
    """All seeds in one program (:func:`bremen_jax.sweep.run_sweep`); the return after each
    deployment's last chunk at ``k x deploy.batch_size`` real steps. ``checkpoint_every`` /
    ``resume``: as :func:`~bremen_jax.sweep.run_sweep`'s (``resume`` only where ``workdir``
    holds a sweep already)."""
    import numpy as np

    from rich.console import Console

    from bremen_jax.sweep import run_sweep

    cfg = bremen_config(spec)
    K, B = int(cfg.deploy.num_deployments), int(cfg.deploy.batch_size)
    t0 = time.perf_counter()
    resume = resume and (workdir / "sweep.json").is_file()
    # the sweep's progress lines (with checkpoint_every: each deployment's return as it ends)
    res = run_sweep((cfg, {"seeds": list(seeds)}), workdir, checkpoint_every=checkpoint_every,
                    resume=resume, console=Console(soft_wrap=True))
    wall = time.perf_counter() - t0
    ev = np.asarray(res.metrics[0]["eval"]["eval/return_mean"], np.float64)[:, :, -1]  # [R, K]
    order = [row["seed"] for row in res.rows]
    if order != list(seeds):
        raise RuntimeError(f"sweep runs in seed order {order}, expected {list(seeds)}")
    t = res.timings[0]
    log(f"  bremen: {np.round(ev.mean(0), 1).tolist()} (compile {t['compile_s']:.0f} s, "
        f"run {t['run_s']:.0f} s)")
    covers = ("all seeds in one vmapped program, compile included "
              f"(compile {t['compile_s']} s, run {t['run_s']} s)")
    earlier = t.get("earlier_s")
    if "resumed_after_deployment" in t:
        d = t["resumed_after_deployment"]
        covers += (f"; resumed after deployment {d}: this call ran deployments {d + 1}..{K} in "
                   f"{wall:.1f} s" + (
                       f", the earlier calls (from the checkpoint's record) {earlier:.1f} s"
                       if earlier is not None else
                       " and wall_s is this call's only (the earlier calls' time was not "
                       "recorded)"))
        wall += earlier or 0.0
    entry = {"samples": [B * (k + 1) for k in range(K)], "returns": ev.T.tolist(),
             "seeds": list(seeds), "deployments": K, "deployments_at": list(range(1, K + 1)),
             "wall_s": [round(wall, 2)], "wall_s_covers": covers,
             "config": {"bremen": json.loads(cfg.to_json()), "overrides": spec["overrides"],
                        "workdir": str(workdir)}}
    if "history" in t:  # checkpointed: compile s per call, [deployments done, s] per chunk
        entry["timing_history"] = t["history"]
    return entry


def sweep_dir(workdir: pathlib.Path, task: str, variant: str) -> pathlib.Path:
    """Where BREMEN ``variant``'s sweep of ``task`` runs: ``WORKDIR/TASK`` or ``TASK-VARIANT``."""
    return workdir / (task if not BREMEN_VARIANTS[variant] else f"{task}-{variant}")


def run_task(name: str, spec: dict, algorithms, seeds, episodes: int, tune: bool,
             workdir: pathlib.Path, log=print, axes: dict | None = None,
             checkpoint_every: int | None = None, resume: bool = False) -> dict:
    """``{algorithm: entry}`` for one task (BREMEN's grid = its deployments)."""
    from bremen_jax.envs.registry import make_task
    from experiments.learning_baselines import tune_baseline

    cfg = bremen_config(spec)
    K, B = int(cfg.deploy.num_deployments), int(cfg.deploy.batch_size)
    samples = [B * (k + 1) for k in range(K)]
    out = {}
    for variant, extra in BREMEN_VARIANTS.items():
        if variant in algorithms:
            log(f"  {variant}: {' '.join(extra) or 'the protocol config'}")
            out[variant] = run_bremen(dict(spec, overrides=spec["overrides"] + extra), seeds,
                                      sweep_dir(workdir, name, variant), log,
                                      checkpoint_every, resume)
    task = make_task(cfg.task, backend=cfg.backend, episode_length=int(cfg.episode_length))
    for algo in (a for a in ("sac", "ppo") if a in algorithms):
        points = workdir / f"{name}-{algo}-points.jsonl"  # each finished point, as it finishes

        def keep(point, result, points=points):
            points.parent.mkdir(parents=True, exist_ok=True)
            with points.open("a") as f:
                f.write(json.dumps({"point": point, "seeds": list(seeds), **result},
                                   default=float) + "\n")

        log(f"  {algo}: each finished point is appended to {points}")
        r = tune_baseline(algo, task, seeds, B, K * B, spec.get(algo, {}), episodes, tune, log,
                          (axes or {}).get(algo), keep)
        out[algo] = {"samples": samples, "returns": r["returns"], "seeds": list(seeds),
                     "deployments": None, "deployments_at": r["deployments_at"],
                     "wall_s": r["wall_s"], "wall_s_covers": "one seed each, compile and "
                     "evaluations included", "config": r["config"]}
    return out


def main(argv=None) -> int:
    args = _parse(argv)
    proto = PROTOCOLS[args.protocol]
    algorithms = [a for a in args.algorithms.split(",") if a]
    bad = sorted(set(algorithms) - set(ALGORITHMS))
    tasks = args.tasks.split(",") if args.tasks else list(proto["tasks"])
    unknown = sorted(set(tasks) - set(proto["tasks"]))
    if bad or unknown or not algorithms:
        print(f"learning_curves: error: algorithms must be some of {list(ALGORITHMS)} and tasks "
              f"some of {list(proto['tasks'])}; got {algorithms}, {tasks}", file=sys.stderr)
        return 2
    try:
        check_checkpoint_every(args.checkpoint_every)
    except CliError as e:
        print(f"learning_curves: error: {e}", file=sys.stderr)
        return 2
    if (args.seeds is not None and args.seeds < 1) or args.first_seed < 0:
        print(f"learning_curves: error: --seeds must be >= 1 and --first-seed >= 0; got "
              f"{args.seeds}, {args.first_seed}", file=sys.stderr)
        return 2
    from experiments.learning_baselines import parse_grid
    try:
        axes = parse_grid(args.grid)
    except ValueError as e:
        print(f"learning_curves: error: {e}", file=sys.stderr)
        return 2
    if axes and not args.tune:
        print("learning_curves: error: --grid needs --tune (it changes the tuning grid)",
              file=sys.stderr)
        return 2
    dirs = [sweep_dir(pathlib.Path(args.workdir), t, a) for t in tasks for a in algorithms
            if a in BREMEN_VARIANTS] if args.workdir else []
    taken = [d for d in dirs if d.is_dir() and any(d.iterdir())
             and not (args.resume and (d / "sweep.json").is_file())]
    if taken:
        what = "holds no sweep to resume" if args.resume else "is not empty"
        print(f"learning_curves: error: sweep directory {taken[0]} exists and {what}; "
              f"choose a new --workdir or remove it (nothing was run)", file=sys.stderr)
        return 2
    seeds = [args.first_seed + s for s in (range(args.seeds) if args.seeds else proto["seeds"])]
    episodes = args.episodes or proto["episodes"]
    from bremen_jax.run.compile import enable_persistent_cache
    from experiments.learning_report import write_outputs

    enable_persistent_cache()
    date = time.strftime("%Y-%m-%d")
    out = pathlib.Path(args.out or f"benchmarks/results/learning-{device_name()}-{date}.json")
    workdir = pathlib.Path(args.workdir or f"runs/learning-{time.strftime('%Y%m%d-%H%M%S')}")
    doc = {"device": device_name(), "date": date, "commit": _commit(),
           "protocol": args.protocol, "episodes_per_evaluation": episodes, "tasks": {}}
    if args.merge and out.is_file():
        old = json.loads(out.read_text())
        if (old.get("protocol"), old.get("episodes_per_evaluation")) != (args.protocol, episodes):
            print(f"learning_curves: error: {out} holds protocol {old.get('protocol')!r} with "
                  f"{old.get('episodes_per_evaluation')} episodes; cannot merge {args.protocol!r} "
                  f"with {episodes}", file=sys.stderr)
            return 2
        doc = dict(old, date=date, commit=_commit())
    t0 = time.perf_counter()
    for name in tasks:
        print(f"[{name}]", flush=True)
        entries = run_task(name, proto["tasks"][name], algorithms, seeds, episodes, args.tune,
                           workdir, lambda s: print(s, flush=True), axes,
                           args.checkpoint_every, args.resume)
        doc["tasks"][name] = {**doc["tasks"].get(name, {}), **entries}
        doc["wall_s_total"] = round(time.perf_counter() - t0, 1)
        paths = write_outputs(doc, out)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
