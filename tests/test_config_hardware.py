"""Every config fits the hardware its header names (core/memory_plan.py), and train.py on CUDA refuses,
in one line with settings that fit, a run whose plan exceeds the GPU (training/memory_check.py)."""

import dataclasses
import os
import re
from pathlib import Path

import pytest
import torch

import train
from core.config import REPO_ROOT, load_config
from core.errors import UserError
from core.memory_plan import GIB, GPUS, plan_memory, settings_that_fit, target_named
from training.distributed import Distributed
from training.memory_check import check_memory_plan

CONFIGS = sorted((REPO_ROOT / "config").glob("*.py"))
# "# Planned for 4 x t4: 10.71 GiB per GPU ..." in the comment block a config file opens with.
PLANNED_FOR = re.compile(r"^# Planned for (\d+) x ([\w.-]+): ([\d.]+) GiB per (?:GPU|process)", re.MULTILINE)
# The published recipe, in tokens per optimizer step (config/openwebtext_common.py and the small run).
PUBLISHED_TOKENS_PER_STEP = {
    "train_gpt2": 491_520, "train_gpt2_new": 491_520, "train_reflow_1": 491_520,
    "train_reflow_1_big": 491_520, "train_reflow_1_topk_big": 491_520, "train_reflow_1_lite": 491_520,
    "train_reflow_1_small": 524_288,
}


def planned_configs() -> list[Path]:
    """Configs that train: not the shared fragments (*_common.py, imported by the others) nor the
    sample.py configs (no training step to plan)."""
    return [p for p in CONFIGS if not p.stem.endswith("_common") and not p.stem.startswith("sample_")]


def header_of(path: Path) -> str:
    """The comment block a config file opens with."""
    lines = path.read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return "\n".join(lines[:end])


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.parametrize("path", planned_configs(), ids=lambda p: p.stem)
def test_config_fits_the_hardware_its_header_names(path):
    """The header names the hardware and the plan's total; the planner agrees with both."""
    found = PLANNED_FOR.findall(header_of(path))
    assert len(found) == 1, f"{path.name}: no '# Planned for N x GPU: X GiB per ...' line in its header"
    world_size, gpu, header_gib = int(found[0][0]), found[0][1], float(found[0][2])
    assert gpu in [*GPUS, "cpu"], f"{path.name} names {gpu!r}"
    cfg = load_config(str(path))
    plan = plan_memory(cfg, target_named(gpu, cfg.dtype), world_size)
    assert round(plan.total_bytes / GIB, 2) == header_gib
    if gpu == "cpu":  # the Shakespeare runs train on the machine that runs the tests
        assert plan.total_bytes < machine_memory_bytes() / 2
    else:
        assert plan.fits, f"{path.name}: {plan.total_bytes / GIB:.2f} GiB per GPU on {gpu}"


def test_published_configs_keep_their_tokens_per_step():
    """Fitting a T4 changed how a step is computed, not what it learns from."""
    for stem, tokens in PUBLISHED_TOKENS_PER_STEP.items():
        cfg = load_config(f"config/{stem}.py")
        assert cfg.batch_size * cfg.gradient_accumulation_steps * cfg.block_size == tokens, stem


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem.endswith("_resume")], ids=lambda p: p.stem)
def test_resume_config_is_its_base_config_resumed(path):
    base = load_config(str(path.with_name(path.name.replace("_resume", ""))))
    assert load_config(str(path)) == dataclasses.replace(base, init_from="resume")


def test_settings_that_fit_keep_the_tokens_and_fit():
    """gpt2 as shipped before issue 26 (no sharding, checkpointing or chunking) needs 19.65 GiB on 4 T4s;
    the planner's cheapest fix fits, keeps the tokens per step and leaves the micro-batch alone."""
    cfg = load_config("config/train_gpt2.py", {"shard": "none", "activation_checkpointing": "False",
                                               "chunked_loss": "False"})
    t4 = target_named("t4")
    assert not plan_memory(cfg, t4, 4).fits
    changes, plan = settings_that_fit(cfg, t4, 4)
    assert plan.fits and "batch_size" not in changes and changes
    fixed = dataclasses.replace(cfg, **changes)
    assert plan_memory(fixed, t4, 4).total_bytes == plan.total_bytes
    # On one process there is nothing to shard: the fix never says shard.
    single, _ = settings_that_fit(cfg, t4, 1)
    assert "shard" not in single


def fake_gpu(monkeypatch, total_bytes: int, fraction: float = 1.0) -> None:
    """torch.cuda as a machine with one GPU of total_bytes would answer (this machine has none)."""
    properties = type("Properties", (), {"total_memory": total_bytes})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=None: properties)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda index=None: fraction)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Fake GPU")


def small_run(tmp_path, **overrides):
    """A Shakespeare-width reflow whose (16 x 256, 50304) logits dominate its plan."""
    cfg = load_config("config/train_shakespeare_reflow.py")
    return dataclasses.replace(cfg, out_dir=str(tmp_path / "run"), batch_size=16, dtype="float16",
                               max_new_tokens=0, **overrides)


def test_train_on_cuda_refuses_a_plan_larger_than_the_gpu(monkeypatch, tmp_path):
    """train.py stops before the model reaches the (faked) GPU, in one line naming settings that fit
    that GPU; nothing is written."""
    fake_gpu(monkeypatch, 2 * GIB)
    cfg = small_run(tmp_path)
    assert not plan_memory(cfg, target_named("t4"), 1, 16).total_bytes < 2 * GIB
    with pytest.raises(UserError) as refused:
        train.setup(cfg, Distributed(device="cuda:0"))
    message = str(refused.value)
    assert "\n" not in message and "Fake GPU" in message and "--memory_check=False" in message
    flags = dict(re.findall(r"--(\w+)=(\w+)", message.split("these fit")[1].split("(python")[0]))
    assert flags, message
    suggested = load_config("config/train_shakespeare_reflow.py",
                            {**{k: str(v) for k, v in dataclasses.asdict(cfg).items()
                                if k in ("batch_size", "dtype", "out_dir")}, **flags})
    assert plan_memory(suggested, target_named("t4"), 1).total_bytes <= 2 * GIB
    assert not (tmp_path / "run").exists()


def test_memory_check_passes_a_fitting_plan_and_can_be_turned_off(monkeypatch, tmp_path):
    fake_gpu(monkeypatch, 16 * GIB)
    check_memory_plan(small_run(tmp_path), "cuda:0", "float16", 1)  # fits: no error
    fake_gpu(monkeypatch, 16 * GIB, fraction=0.1)  # capped to 1.6 GiB, as bench.py --gpu_report caps
    with pytest.raises(UserError, match=r"cuda:0 \(Fake GPU\) has \(1.60 GiB\)"):
        check_memory_plan(small_run(tmp_path), "cuda:0", "float16", 1)
    check_memory_plan(small_run(tmp_path, memory_check=False), "cuda:0", "float16", 1)
    check_memory_plan(small_run(tmp_path), "cpu", "float32", 1)  # no plan is enforced on CPU
