"""The GPU environment of engine verl: its locks against verl 0.9.1's own pins, and resolution.

Failure 2 of the first GPU run: verl[vllm]==0.9.1 pins torch 2.11.0, vLLM 0.24.0 and
transformers 5.9.0, while the only lock had transformers 5.10.4 (and CPU torch 2.13.0)
and no list had flash-attn. verl's installed metadata is the reference here.
"""

import importlib.metadata
import re
import subprocess
import sys

import pytest

pytest.importorskip("verl", reason="verl environment only (make verl-env; make test runs it)")

from packaging.requirements import Requirement  # noqa: E402

from effopd.integrations.verl_engine import ENGINE_MODULES  # noqa: E402

# verl 0.9.1's extras of a vLLM rollout with the FSDP actor's flash attention
EXTRAS = ("vllm", "flash-attn-cu130torch211")


def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path):
    return {key(name): version for name, version in
            re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", path.read_text(), re.M)}


def verl_pins():
    """{distribution: version} of every == pin of verl's own extras above."""
    pins = {}
    for line in importlib.metadata.requires("verl"):
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or not any(marker.evaluate({"extra": e}) for e in EXTRAS):
            continue
        exact = [s.version for s in requirement.specifier if s.operator == "=="]
        if exact:
            pins[key(requirement.name)] = exact[0]
    return pins


def test_gpu_locks_pin_what_verl_0_9_1_pins(repo):
    assert importlib.metadata.version("verl") == "0.9.1"
    locked = lock_pins(repo / "requirements-gpu.lock") | lock_pins(
        repo / "requirements-gpu-build.lock")
    reference = verl_pins()
    assert {"torch", "vllm", "transformers", "flash-attn"} <= set(reference)
    assert {name: locked.get(name) for name in reference} == reference
    assert locked["verl"] == "0.9.1"
    for dist, _ in ENGINE_MODULES.values():  # every module the engine imports is locked
        assert key(dist) in locked, dist


def test_both_install_paths_run_the_same_script(repo):
    """make gpu-env and the train rule's conda environment install from the same locks."""
    script = (repo / "workflow/envs/verl-gpu.post-deploy.sh").read_text()
    assert "requirements-gpu.lock" in script and "requirements-gpu-build.lock" in script
    assert "workflow/envs/verl-gpu.post-deploy.sh" in (repo / "Makefile").read_text()
    assert "python=3.11" in (repo / "workflow/envs/verl-gpu.yaml").read_text()


@pytest.mark.slow
def test_gpu_lock_resolves(repo):
    """pip resolves requirements-gpu.lock as a whole, closed, from PyPI (installs nothing)."""
    result = subprocess.run(["bash", str(repo / "ci/check_gpu_lock.sh"), sys.executable],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "requirements-gpu.lock resolves" in result.stdout
