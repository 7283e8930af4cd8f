"""Default BREMEN configuration: the paper's HalfCheetah settings (reference §8-§9).

Every other config imports this one and overrides fields. Fields marked [static] set a shape or a
trip count (changing them recompiles); the others are HParams (traced; sweepable without recompiling).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "halfcheetah"            # [static] task name (bremen tasks lists them)
    c.backend = "generalized"         # [static] brax backend: generalized | positional | spring | mjx
    c.episode_length = 1000           # [static] real-env episode length
    c.seed = 0                        # run seed (PRNG key); network inits use policy.init_seed
    c.precision = "highest"           # [static] matmul precision: highest | tensorfloat32 | bfloat16 | default

    c.dynamics = d = ml_collections.ConfigDict()
    d.num_members = 5                 # [static] ensemble size (maximum; see num_active)
    d.hidden_sizes = (1024, 1024)     # [static] MLP widths, ReLU
    d.batch_size = 1000               # [static] minibatch size
    d.max_epochs = 200                # [static] epochs per fit at most
    d.eval_every = 5                  # [static] validation every k epochs
    d.patience = 20                   # [static] stop when epoch - best_epoch >= patience
    d.restore_best = False            # [static] original keeps the last weights
    d.val_fraction = 0.15             # [static] last 15% of every batch is validation (ordered)
    d.learning_rate = 1e-3            # Adam learning rate
    d.weight_decay = 1.0              # c in c*(1/N_train)*sum 0.5||W_hidden||^2 (original: json value ignored, c=1)
    d.num_active = 5                  # active members (<= num_members); the rest are masked out

    c.policy = p = ml_collections.ConfigDict()
    p.hidden_sizes = (200, 200)       # [static] policy and BC MLP widths, ReLU
    p.init_seed = 1234                # [static] fixed normc seed as the original; -1 = derive from the run key

    c.bc = b = ml_collections.ConfigDict()
    b.batch_size = 256                # [static]
    b.num_steps = 300_000             # [static] gradient steps per fit
    b.learning_rate = 5e-4            # Adam learning rate
    b.data = "latest"                 # [static] latest | all  (original: latest batch; --all_bc)
    b.reinit = True                   # [static] re-initialise BC net before each fit (original)
    b.reset_optimizer = False         # [static] original keeps Adam state across fits

    c.imagine = im = ml_collections.ConfigDict()
    im.horizon = 250                  # [static] H (1000 for hopper / walker2d)
    im.batch_size = 50_000            # [static] imagined transitions per TRPO iteration (B = batch/H rollouts)
    im.member_sampling = "per_step"   # [static] per_step (original: one member per step for all rollouts) | per_rollout
    im.start_states = "reset"         # [static] reset (original: real reset distribution) | dataset
    im.exploration = "constant"       # [static] constant (mean + sigma*N, original) | learned (mean + std*N)
    im.explore_sigma = 0.1            # sigma of constant exploration (also used when collecting)
    im.keep_partial_paths = False     # [static] False: discard paths cut by the end of the scan (original keeps only complete paths)

    c.trpo = t = ml_collections.ConfigDict()
    t.target_kl = 0.1                 # delta (0.1 halfcheetah, 0.05 ant/hopper/walker2d)
    t.cg_damping = 0.1
    t.cg_iters = 10                   # [static]
    t.ls_steps = 10                   # [static] backtracking steps
    t.ls_backtrack = 0.5              # [static]
    t.accept_ratio = 0.1              # [static]
    t.ls_check_kl = False             # [static] original: no KL check in the line search
    t.fvp = "gauss_newton"            # [static] gauss_newton (J^T H J v, same matrix, ~1.5x fewer FLOPs) | hessian (original's HVP of the KL)
    t.shs_from_cg = True              # [static] x'Fx from the Fx CG accumulates (False: one more FVP, as the original)
    t.line_search = "sequential"      # [static] sequential (stop at first accepted, as the original) | parallel (all candidates vmapped; same result)
    t.gamma = 0.99
    t.lam = 0.95                      # GAE lambda (0.97 ant)
    t.kl_penalty = 0.0                # alpha of the explicit KL-to-behaviour value penalty (original default 0)
    t.baseline = "linear"             # [static] linear (original) | mlp
    t.value_learning_rate = 3e-4      # Adam learning rate of the MLP value function (baseline=mlp)
    t.bootstrap_truncation = False    # [static] original: no bootstrap at the horizon cut
    t.iterations = 2000               # [static] TRPO iterations per deployment (80 x 25)
    t.chunk = 25                      # [static] iterations per jitted call / evaluation period

    c.deploy = dp = ml_collections.ConfigDict()
    dp.num_deployments = 5            # [static] K
    dp.batch_size = 200_000           # [static] real transitions per deployment
    dp.num_envs = 200                 # [static] parallel real envs while collecting (batch_size / num_envs steps each)

    c.eval = e = ml_collections.ConfigDict()
    e.num_episodes = 3                # [static] deterministic real episodes per evaluation
    return c
