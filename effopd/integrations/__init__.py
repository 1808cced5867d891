"""The other training engines, TRL and verl (top floor, beside the command line: they
import everything below, nothing below imports them).

TRL (one process):

- :mod:`.trl_engine`  ``engine: trl``: TRL's ``DistillationTrainer`` / ``GRPOTrainer``
- :mod:`.trl`         :class:`~effopd.integrations.trl.EffOPDCallback`, EffOPD's line
                      search as a TRL callback

verl (paper scale, multi-GPU):

- :mod:`.verl_engine`     ``engine: verl``: compose, launch and collect a verl run
- :mod:`.verl_compose`    Hydra overrides against verl's packaged config
- :mod:`.verl_resources`  GPU pools, leases and token budgets
- :mod:`.verl_reward`     the RL baseline's math-verify reward in verl's workers
- :mod:`.verl_metrics`    verl's metrics -> the engines' ``log.csv`` and search log
- :mod:`.verl_plugin`     the ``effopd`` trainer mode (verl's ``verl.plugins`` entry point)
- :mod:`.verl_effopd`     the line search's arithmetic on FSDP shards
- :mod:`.fsdp_export`     verl's FSDP shards -> a float32 Hugging Face checkpoint

Every engine writes the tables of :mod:`effopd.training.contract`.
"""
