"""The pinned CPU kernels (effopd/cpu_kernels.py): the committed tiny results repeat
bit for bit on this machine, whatever vector unit it has (issue 19, item 5)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from effopd.cpu_kernels import ENV_KEY, bit_exact_scope, cpu_vendor, kernel_env

# Rebuild the tiny default's student exactly as the DAG does (config/config.yaml: task
# data, tokenizer, Qwen3 init, SFT) and stop after 50 SFT steps: the log's first rows.
SCRIPT = r"""
import json, sys
from pathlib import Path
from effopd.config import load_config
from effopd.data.arithmetic import ArithmeticSpec, write_splits
from effopd.models.tokenizer import save_char_tokenizer
from effopd.models.tiny import init_tiny_qwen3
from effopd.io import read_jsonl
from effopd.sft import SFTSpec, supervised_finetune
import torch

out = Path(sys.argv[1])
torch.set_num_threads(1)
config = load_config("config/config.yaml")
write_splits(ArithmeticSpec.from_config(config["task"]), out / "data")
tokenizer = save_char_tokenizer(out / "tokenizer", phrases=[config["prompt"]["instruction"]])
spec = config["models"]["student"]
sft = SFTSpec.from_config(spec["sft"])
model = init_tiny_qwen3(spec["arch"], tokenizer, seed=sft.seed)
supervised_finetune(model, tokenizer, read_jsonl(out / "data" / "train.jsonl"), sft,
                    out / "sft.csv", instruction=config["prompt"]["instruction"],
                    stop_after=100)
print(json.dumps(torch.backends.cpu.get_cpu_capability()))
"""


# The core type numpy's bundled OpenBLAS runs (scipy_openblas's openblas_get_corename).
OPENBLAS_CORE = r"""
import ctypes, glob, os, numpy
libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__), os.pardir, "numpy.libs",
                              "libscipy_openblas*.so*"))
lib = ctypes.CDLL(libs[0])
name = [n for n in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                    "openblas_get_corename64_", "openblas_get_corename") if hasattr(lib, n)][0]
getattr(lib, name).restype = ctypes.c_char_p
print(getattr(lib, name)().decode())
"""


def test_levels_set_the_libraries_variables():
    env = kernel_env("avx2")
    assert env == {ENV_KEY: "avx2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT",
                   "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                   "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
                   "OPENBLAS_CORETYPE": "Haswell"}
    assert kernel_env("portable") == {**{k: v for k, v in env.items()
                                         if k != "MKL_ENABLE_INSTRUCTIONS"},
                                      ENV_KEY: "portable", "MKL_CBWR": "COMPATIBLE,STRICT"}
    assert kernel_env("native") == {ENV_KEY: "native"}
    with pytest.raises(ValueError, match=r"resources.cpu_kernels = 'avx512'"):
        kernel_env("avx512")


def test_pinned_numpy_and_openblas_stop_at_avx2():
    """A process started with the avx2 level: numpy dispatches no AVX-512 kernel and the
    OpenBLAS numpy bundles runs its Haswell (AVX2) kernels, on any x86-64 CPU."""
    env = {**os.environ, **kernel_env("avx2")}
    probe = ("import json, numpy; from numpy._core._multiarray_umath import __cpu_features__ as f;"
             "print(json.dumps({'v4': bool(f.get('X86_V4')), 'icl': bool(f.get('AVX512_ICL'))}))")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"v4": False, "icl": False}
    core = subprocess.run([sys.executable, "-c", OPENBLAS_CORE], env=env, capture_output=True,
                          text=True, timeout=120)
    assert core.returncode == 0, core.stderr
    assert core.stdout.strip().lower() == "haswell"


def test_bit_exact_scope_follows_mkls_vendor_rule():
    assert bit_exact_scope("portable", "AuthenticAMD") == "x86-64"
    assert bit_exact_scope("avx2", "GenuineIntel") == "intel-avx2"
    assert bit_exact_scope("avx2", "AuthenticAMD") == "this-cpu"  # MKL runs its AUTO branch
    assert bit_exact_scope("native", "GenuineIntel") == "this-cpu"


@pytest.mark.slow
@pytest.mark.skipif(cpu_vendor() != "GenuineIntel", reason=(
    f"CPU vendor {cpu_vendor()}: the committed tiny results (cpu_kernels avx2) repeat bit "
    "for bit only where MKL honours MKL_CBWR=AVX2, on Intel CPUs; elsewhere MKL takes its "
    "AUTO branch (measured on an AMD EPYC: the student's log parts at step 75). "
    "cpu_kernels: portable gives results that repeat on Intel and AMD alike"))
def test_student_sft_repeats_the_committed_log(repo, tmp_path):
    """The first 100 SFT steps of the tiny student, rebuilt here with the pinned kernels,
    give the committed log's losses to the last printed digit (an AMD machine, where MKL
    ignores the pin, parts from the committed Intel log at step 75)."""
    env = {k: v for k, v in os.environ.items() if k not in kernel_env("avx2")}
    env.update(kernel_env("avx2"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == "AVX2"
    with open(tmp_path / "sft.csv") as handle:
        rebuilt = [(row["step"], row["lr"], row["loss"]) for row in csv.DictReader(handle)]
    with open(repo / "results" / "tiny" / "train" / "sft_student.csv") as handle:
        committed = [(row["step"], row["lr"], row["loss"]) for row in csv.DictReader(handle)]
    assert rebuilt == committed[:4]
