"""Refuse, before anything is allocated on a GPU, a run whose memory plan exceeds the GPU (`memory_check`).

An out-of-memory error at the first step costs a user the minutes of start-up (data, model, NCCL)
and says nothing about what to change. The planner (core/memory_plan.py) knows both in a second:
when its total is more than the device holds, train.py stops with one line naming the cheapest
settings that fit at the same tokens per step (core.memory_plan.settings_that_fit). The plan is an
estimate (eager mode; see core/memory_plan.py for what it counts), so `--memory_check=False` runs anyway.
"""

import torch

from core.config import Config
from core.errors import UserError
from core.memory_plan import Target, check_training_fits, gib, plan_memory, settings_that_fit


def cuda_target(device: str, dtype: str) -> Target:
    """This process's share of the GPU `device`: its memory times the per-process fraction (which
    torch.cuda.set_per_process_memory_fraction may have lowered, as bench.py --gpu_report does)."""
    index = torch.device(device).index or 0
    total = torch.cuda.get_device_properties(index).total_memory
    capacity = int(total * torch.cuda.get_per_process_memory_fraction(index))
    return Target(device, f"{device} ({torch.cuda.get_device_name(index)})", capacity, dtype)


def check_memory_plan(cfg: Config, device: str, dtype: str, world_size: int) -> None:
    """With cfg.memory_check, raise UserError when the plan of one training step exceeds the device:
    on CUDA naming settings that would fit; elsewhere (CPU, MPS) when it exceeds the machine's memory
    (a batch of a million, a width of 2**20), before the model is built."""
    if not cfg.memory_check:
        return
    if not device.startswith("cuda"):
        check_training_fits(cfg, device, dtype, world_size)
        return
    target = cuda_target(device, dtype)
    plan = plan_memory(cfg, target, world_size)
    if plan.fits:
        return
    found = settings_that_fit(cfg, target, world_size)
    if found is None:
        advice = "nothing fits at these tokens per step: use more GPUs, or a GPU with more memory"
    else:
        changes, fitting = found
        flags = " ".join(f"--{key}={value}" for key, value in changes.items())
        advice = f"these fit ({gib(fitting.total_bytes)}): {flags}"
    raise UserError(f"one training step needs {gib(plan.total_bytes)} per GPU by the memory plan, more than "
                    f"{target.label} has ({gib(target.capacity_bytes)}); {advice} (python check.py CONFIG "
                    f"--memory --world_size={world_size} itemizes it; --memory_check=False runs anyway)")
