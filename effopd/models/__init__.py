"""Models (floor 1): what the engines and the analyses stand on.

- :mod:`.checkpoint`  save, verify and describe checkpoints (manifest, sha256)
- :mod:`.names`       the block-parameter rule (which tensors sit in a transformer block)
- :mod:`.build`, :mod:`.tiny`  the tiny Qwen3 models, built and SFT-ed offline
- :mod:`.tokenizer`   the tiny models' tokenizer
- :mod:`.fetch`       a Hub model at a pinned revision
"""
