"""effopd: a reproducibility suite for on-policy distillation and EffOPD.

The package is a building whose imports only point down (README, "Layout";
``tests/test_floors.py`` checks every import):

- top floor: :mod:`effopd.cli` (the ``effopd`` command line) and
  :mod:`effopd.integrations` (the TRL and verl engines);
- floor 3: :mod:`effopd.reports` (tables) and :mod:`effopd.plots` (figures),
  from results on disk;
- floor 2: :mod:`effopd.training` (the local engine and the engines' contract),
  :mod:`effopd.analysis` (the science of checkpoint series), :mod:`effopd.evaluation`;
- floor 1: :mod:`effopd.data`, :mod:`effopd.models`, :mod:`effopd.grading`,
  :mod:`effopd.code_grading`, :mod:`effopd.generation`, :mod:`effopd.sft`;
- ground: :mod:`effopd.io`, :mod:`effopd.config`, :mod:`effopd.errors`,
  :mod:`effopd.device`, :mod:`effopd.prompts`, :mod:`effopd.provenance`,
  :mod:`effopd.metrics`, :mod:`effopd.tables`, :mod:`effopd.cpu_kernels`.
"""
