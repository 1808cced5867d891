"""Helpers of tests/on_verl_cpu: the CPU environment, the DAG command, stopping Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONFIG = Path(__file__).with_name("verl_cpu.yaml")
EXPERIMENT = "verlcpu"


def cpu_env() -> dict[str, str]:
    from effopd.integrations.verl_cpu import CPU_ENV

    return {**os.environ, **CPU_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def snakemake_args(workdir: Path, *targets: str) -> list[str]:
    """The real DAG on config/smoke.yaml + verl_cpu.yaml, outputs under ``workdir``."""
    return [str(BIN / "snakemake"), *targets, "--cores", "2", "--rerun-incomplete", "-s",
            str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
            str(REPO / "config" / "smoke.yaml"), str(CONFIG)]


def stop_ray(workdir: Path | None = None) -> None:
    """Stop this test's Ray cluster, then the vLLM engine processes it left orphaned
    (``VLLM::EngineCore``/``VLLM::Worker`` outlive their Ray actor): those whose working
    folder is ``workdir``, the test's DAG folder."""
    subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)
    if workdir is None:
        return
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")) == workdir:
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess:
    """Run a console script of this venv (effopd) and capture its output."""
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env=cpu_env(), cwd=cwd or REPO, timeout=timeout)
