"""Pin the CPU kernels torch and its math libraries pick, so that CPU results repeat
bit for bit on other machines (ground floor: imports nothing of ours).

torch dispatches its own vector kernels by the CPU it finds (AVX-512 where present)
and MKL picks its GEMM code path (AVX-512, AMX, ...) the same way; a different path
rounds differently, and a training run that rounds differently drifts (the tiny SFT
loss differs in the fourth decimal within 100 steps). Pinning ``avx2`` sets, before
torch is imported:

- ``ATEN_CPU_CAPABILITY=avx2``: torch's own kernels;
- ``MKL_CBWR=AVX2,STRICT``: MKL's conditional numerical reproducibility at the AVX2
  code path, strict (results independent of memory alignment);
- ``MKL_ENABLE_INSTRUCTIONS=AVX2`` and ``ONEDNN_MAX_CPU_ISA=AVX2``: no wider paths;
- ``NPY_DISABLE_CPU_FEATURES=X86_V4 AVX512_ICL AVX512_SPR``: numpy's universal
  intrinsics stop at AVX2 (its AVX-512 sums and reductions round differently);
- ``OPENBLAS_CORETYPE=Haswell``: the OpenBLAS that numpy and scipy bundle (least
  squares, SVD, matrix products of the analyses and tables) uses its AVX2 kernels and
  blocking on every CPU. Without these two, tables redrawn in reviewer mode on an
  AVX2 machine differed from an AVX-512 machine's in the 16th significant digit.
  numpy and OpenBLAS read them when first loaded: in the DAG every job inherits them
  from the Snakefile.

MKL honours ``MKL_CBWR=AVX2`` on Intel CPUs only: on any other CPU (AMD) it silently takes
its AUTO branch, so ``avx2`` results are bit-exact across Intel CPUs with AVX2 but not
between Intel and AMD (measured: the tiny student's SFT log made on an Intel machine and
rebuilt on an AMD EPYC machine part at step 75, the teacher's at step 50). Nor can an
Intel machine imitate AMD's branch: with torch's kernels pinned as ``avx2``, the tiny
student's SFT rebuilt on Intel under ``MKL_CBWR=AVX2`` (not strict), ``AUTO`` with
``MKL_ENABLE_INSTRUCTIONS=AVX2``, ``AVX`` or MKL unpinned matched the AMD log at step 75
at best and parted from it by step 100 (measured 2026-12-06). ``portable``
takes MKL's ``COMPATIBLE`` branch (SSE2 without approximate reciprocals), the one branch
MKL runs on every x86-64 vendor, with the other variables as ``avx2``: bit-exact across
Intel and AMD at about 2x the CPU time of a training step (benchmarks/cpu_kernels.py).

``native`` leaves all of them to the libraries (faster on AVX-512/AMX machines, not
reproducible across CPUs). GPU results are not bit-exact either way.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

LEVELS: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
             "OPENBLAS_CORETYPE": "Haswell"},
    "portable": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT",
                 "ONEDNN_MAX_CPU_ISA": "AVX2",
                 "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
                 "OPENBLAS_CORETYPE": "Haswell"},
    "native": {},
}
ENV_KEY = "EFFOPD_CPU_KERNELS"  # carries the level to every job and subprocess
VARIABLES = tuple(sorted({name for env in LEVELS.values() for name in env}))


def kernel_env(level: str) -> dict[str, str]:
    """The environment variables of ``level`` (``avx2`` or ``native``), ENV_KEY included."""
    if level not in LEVELS:
        raise ValueError(f"resources.cpu_kernels = {level!r}: expected one of {sorted(LEVELS)}")
    return {ENV_KEY: level, **LEVELS[level]}


def pin_cpu_kernels(level: str) -> dict[str, str]:
    """Set ``level``'s variables in ``os.environ`` (children inherit them); return them.

    Takes effect for torch only if it runs before torch is first imported in this
    process (torch reads ``ATEN_CPU_CAPABILITY`` once); otherwise a warning says which
    kernels this process uses (its children still get ``level``).
    """
    env = kernel_env(level)
    for name in VARIABLES:  # nothing of another level stays behind
        os.environ.pop(name, None)
    os.environ.update(env)
    torch = sys.modules.get("torch")
    if torch is not None and level != "native":
        found = torch.backends.cpu.get_cpu_capability().lower()
        if found != env["ATEN_CPU_CAPABILITY"]:
            logging.getLogger(__name__).warning(
                "%s=%s: torch was imported before the CPU kernels were pinned and uses %s",
                ENV_KEY, level, found)
    return env


def cpu_vendor() -> str | None:
    """The CPU's vendor id (``GenuineIntel``, ``AuthenticAMD``, ...) from /proc/cpuinfo;
    None where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def bit_exact_scope(level: str, vendor: str | None) -> str:
    """Which machines reproduce this process's CPU results bit for bit: ``x86-64`` for
    ``portable``, ``intel-avx2`` for ``avx2`` on an Intel CPU, ``this-cpu`` otherwise
    (``avx2`` on a non-Intel CPU runs MKL's AUTO branch; ``native``)."""
    if level == "portable":
        return "x86-64"
    if level == "avx2" and vendor == "GenuineIntel":
        return "intel-avx2"
    return "this-cpu"


def kernel_provenance() -> dict[str, Any]:
    """What the kernels of this process are: the level asked for, torch's capability,
    and each pinning variable as set (None where unset)."""
    import numpy
    import torch

    numpy_features = numpy._core._multiarray_umath.__cpu_features__
    level, vendor = os.environ.get(ENV_KEY, "native"), cpu_vendor()
    return {"level": level, "cpu_vendor": vendor,
            "bit_exact_scope": bit_exact_scope(level, vendor),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "numpy_simd": sorted(f for f in ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR")
                                 if numpy_features.get(f)),
            **{name: os.environ.get(name) for name in VARIABLES}}
