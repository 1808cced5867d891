"""Training: the local engine and what every engine shares (floor 2, beside the analyses).

- :mod:`.contract`       the engines' neutral contract: log, search and index columns,
                         step and search seeds, block parameters, save steps, CPU time
                         (no engine owns it; TRL and verl import it from here)
- :mod:`.trainer`        the local engine: OPD, RL (GRPO) and EffOPD on one CPU or GPU
- :mod:`.losses`         advantages and the PPO-clip loss
- :mod:`.extrapolation`  EffOPD's line search (every engine's)
- :mod:`.schedule`       the shared checkpoint grid, learning rates and lr baselines

The other engines live on the floor above, in :mod:`effopd.integrations`.
"""
