"""Data (floor 1): the tiny task, math and code benchmarks, training prompts.

- :mod:`.arithmetic`       the tiny task's splits
- :mod:`.code_task`        the tiny code task's splits (programs with hidden tests)
- :mod:`.tasks`            the config's task (``task.kind``)
- :mod:`.benchmarks`       prepared benchmarks (JSONL with id, problem, answer)
- :mod:`.code_benchmarks`  code benchmarks
- :mod:`.train_data`       the training prompts
"""
