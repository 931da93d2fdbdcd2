"""Test support: a CPU platform for verl 0.9.1, registered through verl's own ``PlatformRegistry``.

verl ships platforms for NVIDIA, Ascend and ROCm only, and falls back to ``nvidia`` on a CPU-only machine. Its
registry accepts external platforms, loaded with ``VERL_USE_EXTERNAL_MODULES=tests.verl.cpu_platform`` and selected
with ``VERL_PLATFORM=cpu`` (both read by verl itself, :func:`engine_env` sets them). Nothing in verl is patched;
this class only answers what verl asks a platform:

* ``device_name`` "cpu" and ``current_device()`` the *string* "cpu": verl moves tensors with
  ``.to(get_device_id())``, and an int would name an accelerator (``verl/utils/fsdp_utils.py`` ~507);
* ``communication_backend_name`` "gloo";
* ``device_module``: ``torch.cpu`` plus the few calls verl makes on a CUDA module (seeding, memory and name
  queries — the FLOPs counter asks for ``get_device_name()``, ``verl/utils/flops_counter.py`` ~78);
* ``ray_resource_name`` "GPU": verl's V1 resource pools always ask Ray for GPU bundles.

Only the test process loads it; it is not part of varpo.
"""

from __future__ import annotations

import contextlib
import os
import types

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry


def _device_module() -> types.ModuleType:
    module = types.ModuleType("varpo_test_cpu_device")
    module.__dict__.update({k: getattr(torch.cpu, k) for k in dir(torch.cpu) if not k.startswith("__")})
    module.is_available = lambda: True
    module.device_count = lambda: 1
    module.current_device = lambda: "cpu"
    module.set_device = lambda *a, **k: None
    module.synchronize = lambda *a, **k: None
    module.empty_cache = lambda: None
    module.manual_seed = lambda seed: None  # torch.manual_seed already seeds the CPU generator
    module.manual_seed_all = lambda seed: None
    module.get_device_name = lambda *a, **k: "cpu"
    module.mem_get_info = lambda *a, **k: (0, 0)
    module.memory_allocated = lambda *a, **k: 0
    module.memory_reserved = lambda *a, **k: 0
    module.max_memory_allocated = lambda *a, **k: 0
    module.max_memory_reserved = lambda *a, **k: 0
    module.reset_peak_memory_stats = lambda *a, **k: None
    module.get_rng_state = torch.get_rng_state
    module.set_rng_state = torch.set_rng_state
    return module


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    """CPU tensors, gloo collectives; everything accelerator-specific is a no-op."""

    _module = _device_module()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return self._module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"

    def current_device(self):
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def rollout_env_vars(self) -> dict[str, str]:
        return {}

    def cudart(self):
        return None


def engine_env(port: int) -> dict[str, str]:
    """Environment for a process that runs verl's real worker on this platform (single rank, gloo)."""
    return {
        "VERL_USE_EXTERNAL_MODULES": "tests.verl.cpu_platform",
        "VERL_PLATFORM": "cpu",
        # The FSDP engine is registered for cuda/npu only (verl/workers/engine/fsdp/transformer_impl.py ~1143);
        # this selects that class, which then runs on CPU tensors.
        "VERL_ENGINE_DEVICE": "cuda",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
