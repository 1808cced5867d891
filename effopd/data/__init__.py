"""Data (floor 1): the tiny task, math and code benchmarks, training prompts.

- :mod:`.arithmetic`       the tiny task's splits
- :mod:`.benchmarks`       prepared benchmarks (JSONL with id, problem, answer)
- :mod:`.code_benchmarks`  code benchmarks
- :mod:`.train_data`       the training prompts
"""
