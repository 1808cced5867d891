"""Where the arithmetic runs: ground floor, so analysis, generation and every engine share it.

Every streaming analysis takes ``device`` and moves one tensor at a time to it;
results (numbers, small bases) come back to the CPU. Nothing in the package
names ``cuda`` except :func:`resolve_device`.
"""

from __future__ import annotations

import torch

DeviceLike = str | torch.device


def resolve_device(device: DeviceLike = "cpu") -> torch.device:
    """Turn ``device`` into a :class:`torch.device`.

    ``"auto"`` means CUDA when it is available, else the CPU. Asking for a CUDA
    device on a machine without one raises ``RuntimeError`` instead of silently
    falling back, so a job configured for a GPU never runs (slowly) on the CPU
    by accident.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for, but CUDA is not available here")
    return resolved
