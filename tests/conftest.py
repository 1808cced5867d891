"""Shared fixtures: tiny real models, tokenizers and data, built offline in tmp dirs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from effopd.cpu_kernels import pin_cpu_kernels

# The suite's default CPU kernels, before any test imports torch (effopd/cpu_kernels.py).
pin_cpu_kernels("avx2")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# tests/on_vllm need vLLM (the vLLM environment: make vllm-env; make test runs them there);
# elsewhere they are not collected at all, rather than skipped.
collect_ignore = [] if importlib.util.find_spec("vllm") else ["on_vllm"]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Small matrices: one thread avoids OpenMP barrier stalls when the 2 cores are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a console script of the venv (effopd, snakemake) and capture its output."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                **(env or {})}
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


@pytest.fixture(scope="session")
def char_tokenizer():
    from effopd.models.tokenizer import build_char_tokenizer
    from effopd.prompts import DEFAULT_INSTRUCTION

    return build_char_tokenizer([DEFAULT_INSTRUCTION])


TINY_ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, char_tokenizer) -> Path:
    """A randomly initialised tiny Qwen3 checkpoint with the char tokenizer, saved to disk."""
    from effopd.models.checkpoint import save_checkpoint
    from effopd.models.tiny import init_tiny_qwen3

    out = tmp_path_factory.mktemp("ckpt") / "model"
    model = init_tiny_qwen3(TINY_ARCH, char_tokenizer, seed=0)
    save_checkpoint(model, char_tokenizer, out, {"source": "test"})
    return out


def run_smoke_dag(workdir: Path, *extra: str, timeout: float = 1200,
                  configfile: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real DAG on config/smoke.yaml (or ``configfile``) with outputs under
    ``workdir``.

    ``extra`` goes first: ``--configfile`` takes several values and would read a
    target placed after it as another config file.
    """
    return run_cli("snakemake", *extra, "-s", str(REPO / "Snakefile"), "--directory",
                   str(workdir), "--configfile",
                   str(configfile or REPO / "config" / "smoke.yaml"), timeout=timeout)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke DAG run once locally (2 cores); shared by the tests that read its outputs.

    Under pytest-xdist (``make test`` runs ``-n auto``) every worker has its own session,
    so the first worker to ask runs the DAG under a file lock in the folder all workers
    share, and the others wait for it and read the same outputs (or its failure)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    workdir = shared / "smoke-dag"
    done, failure = shared / "smoke-dag.done", shared / "smoke-dag.failed"
    with FileLock(str(shared / "smoke-dag.lock")):
        if not done.exists() and not failure.exists():
            workdir.mkdir(exist_ok=True)
            result = run_smoke_dag(workdir, "--cores", "2")
            if result.returncode == 0:
                done.write_text("")
            else:
                failure.write_text(result.stderr[-4000:])
    assert not failure.exists(), failure.read_text()
    return workdir
