"""Figures from the tables (floor 3, beside :mod:`effopd.reports`): no models, no torch.

- :mod:`.training`  accuracy against steps, tokens and CPU time; the speed-up fits
- :mod:`.analysis`  the analysis figures
- :mod:`.style`     one style for every figure, PNG + PDF written atomically
"""
