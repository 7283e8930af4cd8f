"""Runtime data the algorithm uses: the replay buffer (``buffer``) and the dataset file format
(``dataset``; its checks in ``dataset_checks``). Dataset-making tools live in
:mod:`bremen_jax.datasets`; real-env acting in :mod:`bremen_jax.envs.acting`."""
