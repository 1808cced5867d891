"""Tables from results on disk (floor 3): they read CSV files, never models, and load
no torch; the command line above calls them, the science below never does.

- :mod:`.speedup`   the speed-up estimator, defined term by term
- :mod:`.training`  training curves, speed-up and compute tables
- :mod:`.ablation`  EffOPD's step-size ablation
- :mod:`.analysis`  the analysis tables over runs (mean and 95% CI over seeds)
- :mod:`.claims`    the claims table: metric, value, verdict
- :mod:`.stats`     intervals, power, minimum detectable effects
- :mod:`.runs`      which run a file belongs to

Defaults come from the config schema (:func:`effopd.config.block_defaults`).
"""
