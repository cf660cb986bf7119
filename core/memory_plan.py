"""Memory planner: how much memory one training step needs per device, before anything is allocated.

    python check.py config/train_reflow_1_big.py --memory --gpu=t4 --world_size=4

The estimate is a sum of named items, each a formula over the config (no weights are allocated;
the parameter count comes from the model built on the meta device):

- weights: parameters x 4 bytes (fp32 master weights, also under autocast);
- gradients: parameters x 4 bytes;
- AdamW state: exp_avg and exp_avg_sq, parameters x 8 bytes; divided by the world size when the
  optimizer state is sharded (shard="optimizer" or "full");
- DDP gradient buckets: DistributedDataParallel reduces gradients through buckets as large as the
  gradients (world size > 1, shard != "full");
- autocast weight copies: under fp16/bf16 autocast each weight is cast once per forward and the
  half-precision copy kept for the backward pass, parameters x 2 bytes;
- with on_nonfinite="skip", a copy of the weights and AdamW state taken before each update, to undo
  one that overflows;
- activations: what autograd saves in the forward pass for the backward pass, per layer (formula
  below) x n_layer, plus the embedding's; with activation checkpointing, each block keeps only its
  input and one block's activations exist again while it is recomputed;
- logits and loss: at the start of the backward pass, the (B, T, V) log-softmax (saved, fp32), its
  gradient and the logits' gradient (fp32). With chunked loss only one chunk of positions holds
  them at a time, plus the gradients it takes in the forward pass (of h, and of the vocab weights);
- framework reserve (GPUs): the CUDA context and library workspaces (FRAMEWORK_RESERVE_BYTES) and the
  caching allocator's fragmentation (ALLOCATOR_SLACK of the allocations).

Activations per token and layer, in elements (C = n_embd, kv = n_kv_head x head size, F = MLP
hidden size), as autograd saves them in our blocks (counted from the saved tensors and checked
against the CPU allocator in tests/test_memory_plan.py):
- residual stream, block input and mid-block sum: 2C, always fp32 (autocast leaves the residual
  stream in fp32);
- each norm's output, saved by the next matmul: 2 x C; on CPU, torch's RMSNorm is a composite
  that also saves its normalized input (2 x C more, fp32);
- attention: the fused q|k|v projection (C + 2 kv), the rotated queries and keys (C + kv, RoPE
  models), the attention output (C), its log-sum-exp (n_head, fp32);
- MLP: GELU saves its input and output (4C + 4C); SwiGLU its gate|up projection (2F), silu(gate)
  (F) and the product (F).
Half-precision tensors count 2 bytes under autocast, fp32 ones 4. The estimate is for eager mode;
torch.compile fuses elementwise ops and usually saves less.
"""

import dataclasses
import os
from dataclasses import dataclass, field

import torch

from core.errors import UserError
from models import build_model

GIB = 2**30
MIB = 2**20

# Memory a GPU reports to CUDA (nvidia-smi's "Total", MiB), and the dtype dtype="auto" picks on it.
GPUS = {
    "t4": ("Tesla T4 16 GB", 15360 * MIB, "float16"),
    "a100-40gb": ("A100 40 GB", 40960 * MIB, "bfloat16"),
    "a100-80gb": ("A100 80 GB", 81920 * MIB, "bfloat16"),
    "h100": ("H100 80 GB", 81559 * MIB, "bfloat16"),
    "h200": ("H200 141 GB", 143771 * MIB, "bfloat16"),
}
# CUDA context (0.3-0.5 GiB with torch's kernels loaded), cuBLAS workspaces and NCCL buffers:
# memory the GPU loses before torch's allocator counts a byte.
FRAMEWORK_RESERVE_BYTES = 1 * GIB
ALLOCATOR_SLACK = 0.05  # the caching allocator's fragmentation, as a share of what it hands out
LOSS_CHUNK_POSITIONS = 1024  # positions per chunk under chunked loss, unless the model says otherwise
MAX_BATCH_SEARCHED = 4096


@dataclass
class Target:
    """Where the step runs: a named GPU, or the CPU (fp32, no reserve)."""

    name: str
    label: str
    capacity_bytes: int | None  # None: not checked (CPU)
    dtype: str

    @property
    def is_cpu(self) -> bool:
        return self.name == "cpu"


def target_named(name: str, dtype: str = "auto") -> Target:
    """A GPU from GPUS, or 'cpu'; dtype 'auto' resolves as train.py would resolve it there."""
    if name == "cpu":
        return Target("cpu", "CPU", None, "float32" if dtype == "auto" else dtype)
    label, capacity, auto_dtype = GPUS[name]
    return Target(name, label, capacity, auto_dtype if dtype == "auto" else dtype)


@dataclass
class MemoryPlan:
    """Bytes per device for one training step; `items` sum to `total_bytes`."""

    target: Target
    model: str
    batch_size: int
    block_size: int
    world_size: int
    shard: str
    activation_checkpointing: bool
    chunked_loss: bool
    items: dict[str, int] = field(default_factory=dict)
    activations_per_layer: int = 0
    activations_per_layer_checkpointed: int = 0
    activations_without_checkpointing: int = 0
    activations_with_checkpointing: int = 0
    logits_unchunked: int = 0
    logits_chunked: int = 0
    optimizer_unsharded: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.items.values())

    def total_if(self, activation_checkpointing: bool, chunked_loss: bool) -> int:
        """The total had the step used (or not) activation checkpointing and chunked loss."""
        activations = (self.activations_with_checkpointing if activation_checkpointing
                       else self.activations_without_checkpointing)
        logits = self.logits_chunked if chunked_loss else self.logits_unchunked
        fixed = self.total_bytes - self.items["activations"] - self.items["logits and loss"]
        return fixed + activations + logits

    @property
    def fits(self) -> bool | None:
        cap = self.target.capacity_bytes
        return None if cap is None else self.total_bytes <= cap


def element_bytes(dtype: str) -> int:
    return 2 if dtype in ("float16", "bfloat16") else 4


def block_activation_bytes(model: str, cfg, act: int, cpu: bool) -> int:
    """Bytes autograd saves per token in one block (see the module docstring for the terms)."""
    C, H = cfg.n_embd, cfg.n_head
    kv = cfg.n_kv_head * (C // H)
    rope = model != "gpt2"
    residual = 2 * C * 4
    norms = 2 * C * act + (2 * C * 4 if cpu and model != "gpt2" else 0)
    attention = (C + 2 * kv) * act + ((C + kv) * act if rope else 0) + C * act + H * 4
    if model == "gpt2":
        mlp = 8 * C * act
    else:
        F = cfg.swiglu_hidden
        mlp = 4 * F * act
    return residual + norms + attention + mlp


def head_activation_bytes(model: str, cfg, act: int, cpu: bool) -> int:
    """Bytes saved per token outside the blocks, logits excluded: the last block's output and the
    final norm (as a block's norms), reflow's (B, T, S) tensors in embed and unembed."""
    C = cfg.n_embd
    saved = C * 4 + C * act + (C * 4 if cpu and model != "gpt2" else 0)
    if model.startswith("reflow"):
        saved += 2 * cfg.n_signals * act  # recipe[idx] before @ basis, and h @ basis^T before @ recipe^T
    return saved


def vocab_activation_bytes(model: str, cfg, act: int) -> int:
    """Per-forward (V, S) tensors: reflow-topk's ReLU output and top-k mask (fp32) and the masked
    recipes it multiplies by (fp32 on CPU, cast to half under autocast)."""
    if model != "reflow-topk":
        return 0
    return cfg.vocab_size * cfg.n_signals * (4 + 4 + act)


def logits_bytes(positions: int, vocab: int) -> int:
    """The loss's peak, at the start of the backward pass: the log-softmax (saved), its gradient and
    the logits' gradient, each (positions, V) in fp32. (In the forward pass, the logits, their fp32
    copy under autocast and the log-softmax take less; train_step drops the logits once the loss is
    computed.)"""
    return positions * vocab * 3 * 4


def plan_memory(cfg, target: Target, world_size: int = 1, batch_size: int | None = None) -> MemoryPlan:
    """The memory plan of cfg's training step on `target` with `world_size` data-parallel ranks."""
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.model_config())
    return plan_for_model(cfg, model, target, world_size, batch_size)


def plan_for_model(cfg, model, target: Target, world_size: int, batch_size: int | None) -> MemoryPlan:
    mcfg = model.config
    B = batch_size or cfg.batch_size
    T = cfg.block_size
    act = element_bytes(target.dtype) if not target.is_cpu else 4
    params = model.num_params()
    shard = getattr(cfg, "shard", "none")
    # The execution keys come from cfg (the model's own only where cfg lacks them), so that
    # settings_that_fit can try them on one meta model.
    checkpointing = bool(getattr(cfg, "activation_checkpointing", getattr(mcfg, "activation_checkpointing",
                                                                          False)))
    chunked = bool(getattr(cfg, "chunked_loss", getattr(mcfg, "chunked_loss", False)))
    chunk = getattr(cfg, "loss_chunk_size", getattr(mcfg, "loss_chunk_size", LOSS_CHUNK_POSITIONS))
    plan = MemoryPlan(target, cfg.model, B, T, world_size, shard, checkpointing, chunked)

    sharded_state = world_size if shard in ("optimizer", "full") else 1
    sharded_weights = world_size if shard == "full" else 1
    items = plan.items
    items["weights"] = params * 4 // sharded_weights
    items["gradients"] = params * 4 // sharded_weights
    plan.optimizer_unsharded = params * 8
    items["AdamW state"] = params * 8 // sharded_state
    if world_size > 1 and shard != "full":
        items["DDP gradient buckets"] = params * 4
    if shard == "full":
        # FSDP gathers one block's weights (and their gradients) whole, and prefetches the next.
        largest_block = sum(p.numel() for p in model.blocks[0].parameters())
        items["FSDP gathered blocks"] = 2 * 2 * largest_block * 4
    if act < 4:
        items["autocast weight copies"] = params * act // sharded_weights
    if getattr(cfg, "on_nonfinite", "stop") == "skip":  # training.optimization.state_copy, during a step
        items["undo copy (on_nonfinite=skip)"] = items["weights"] + items["AdamW state"]

    tokens = B * T
    per_layer = block_activation_bytes(cfg.model, mcfg, act, target.is_cpu) * tokens
    kept_per_layer = mcfg.n_embd * 4 * tokens  # a checkpointed block keeps its input only
    fixed = head_activation_bytes(cfg.model, mcfg, act, target.is_cpu) * tokens
    fixed += vocab_activation_bytes(cfg.model, mcfg, act)
    plan.activations_per_layer, plan.activations_per_layer_checkpointed = per_layer, kept_per_layer
    plan.activations_without_checkpointing = mcfg.n_layer * per_layer + fixed
    plan.activations_with_checkpointing = mcfg.n_layer * kept_per_layer + per_layer + fixed
    items["activations"] = (plan.activations_with_checkpointing if checkpointing
                            else plan.activations_without_checkpointing)
    plan.logits_unchunked = logits_bytes(tokens, mcfg.vocab_size)
    # models/chunked_loss.py takes each chunk's gradients in the forward pass and keeps them for the
    # backward: the gradient of h (fp32) and of the vocab weights (wte, or recipe and basis).
    vocab_weights = (mcfg.vocab_size * mcfg.n_signals + mcfg.n_signals * mcfg.n_embd
                     if cfg.model.startswith("reflow") else mcfg.vocab_size * mcfg.n_embd)
    plan.logits_chunked = (logits_bytes(min(tokens, chunk), mcfg.vocab_size) + tokens * mcfg.n_embd * 4
                           + vocab_weights * 4)
    items["logits and loss"] = plan.logits_chunked if chunked else plan.logits_unchunked
    if not target.is_cpu:
        items["framework reserve"] = FRAMEWORK_RESERVE_BYTES + int(ALLOCATOR_SLACK * sum(items.values()))
    if shard == "full" and target.dtype == "float16":
        plan.notes.append("train.py refuses shard='full' with float16 (see training/sharding.py)")
    if mcfg.dropout > 0:
        plan.notes.append("dropout > 0: its masks (1 byte per element) are not counted")
    if cfg.compile:
        plan.notes.append("compile=True: estimated for eager mode; compiled steps usually save less")
    return plan


def largest_batch_that_fits(cfg, target: Target, world_size: int = 1) -> int:
    """The largest micro-batch (batch_size) whose plan fits target; 0 if not even 1 fits."""
    if target.capacity_bytes is None:
        raise ValueError("the CPU has no fixed capacity to fit")
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.model_config())
    fits = lambda b: plan_for_model(cfg, model, target, world_size, b).fits
    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= MAX_BATCH_SEARCHED and fits(high):
        low, high = high, high * 2
    while high - low > 1:  # the plan grows with the batch: bisect between a fit and a miss
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


# What train.py may suggest when a step does not fit, cheapest first: chunked loss costs little, ZeRO-1 a
# broadcast of the weights per step, activation checkpointing a second forward pass per block.
MEMORY_SAVINGS = (
    {},
    {"chunked_loss": True},
    {"shard": "optimizer"},
    {"shard": "optimizer", "chunked_loss": True},
    {"activation_checkpointing": True, "chunked_loss": True},
    {"shard": "optimizer", "activation_checkpointing": True, "chunked_loss": True},
)


def settings_that_fit(cfg, target: Target, world_size: int = 1) -> tuple[dict, MemoryPlan] | None:
    """The cheapest changes to cfg whose step fits target, at the same tokens per step, and their plan;
    None if none does. The micro-batch is kept if anything in MEMORY_SAVINGS makes it fit, else
    halved and so on (its divisors, largest first), gradient_accumulation_steps growing to match.
    Savings cfg already uses stay on; shard is tried only with several processes (one has nothing
    to shard)."""
    if target.capacity_bytes is None:
        raise ValueError("the CPU has no fixed capacity to fit")
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.model_config())
    savings = [s for s in MEMORY_SAVINGS if world_size > 1 or "shard" not in s]
    for batch in [b for b in range(cfg.batch_size, 0, -1) if cfg.batch_size % b == 0]:
        accumulation = cfg.gradient_accumulation_steps * cfg.batch_size // batch
        for saving in savings:
            changes = {key: value for key, value in saving.items() if getattr(cfg, key) in (False, "none")}
            if batch != cfg.batch_size:
                changes |= {"batch_size": batch, "gradient_accumulation_steps": accumulation}
            plan = plan_for_model(dataclasses.replace(cfg, **changes), model, target, world_size, batch)
            if plan.fits:
                return changes, plan
    return None


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def format_plan(plan: MemoryPlan, largest_batch: int | None) -> str:
    """The plan as a readable, itemized table."""
    t = plan.target
    lines = [
        f"memory plan per {'process' if t.is_cpu else 'GPU'}: {plan.model}, micro-batch {plan.batch_size} x "
        f"{plan.block_size}, {t.dtype}{' autocast' if t.dtype != 'float32' else ''}, world size "
        f"{plan.world_size}, shard={plan.shard}, activation_checkpointing={plan.activation_checkpointing}, "
        f"chunked_loss={plan.chunked_loss}, on {t.label}",
    ]
    width = 26
    for name, size in plan.items.items():
        detail = ""
        if name == "AdamW state" and plan.world_size > 1:
            detail = (f"(sharded over {plan.world_size}; unsharded {gib(plan.optimizer_unsharded)})"
                      if plan.shard != "none" else
                      f"(unsharded; shard=optimizer: {gib(plan.optimizer_unsharded // plan.world_size)})")
        elif name == "activations":
            detail = (f"(per layer {gib(plan.activations_per_layer)}; without checkpointing "
                      f"{gib(plan.activations_without_checkpointing)}, with "
                      f"{gib(plan.activations_with_checkpointing)})")
        elif name == "logits and loss":
            detail = (f"(unchunked {gib(plan.logits_unchunked)}, chunked {gib(plan.logits_chunked)})")
        lines.append(f"  {name:<{width}}{gib(size):>12}  {detail}".rstrip())
    lines.append(f"  {'total':<{width}}{gib(plan.total_bytes):>12}")
    if t.capacity_bytes is not None:
        verdict = "fits" if plan.fits else "does NOT fit"
        lines.append(f"{verdict} on {t.label} ({gib(t.capacity_bytes)}); largest batch_size that fits: "
                     f"{largest_batch}" + (" (none: shard or checkpoint more)" if largest_batch == 0 else ""))
    lines += [f"note: {note}" for note in plan.notes]
    return "\n".join(lines)


# --- refusing what cannot fit, before it is allocated ----------------------------------------------
def device_capacity(device: str) -> int | None:
    """Bytes of memory the device has in all (None where unknown: mps): CPU RAM, or the GPU's."""
    if device == "cpu":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return None


def target_of(device: str, dtype: str) -> Target:
    """The machine this process runs on, as a planning target."""
    if device == "cpu":
        return Target("cpu", "CPU", device_capacity(device), "float32")
    return Target(device, device, device_capacity(device), dtype)


def refuse_unless_it_fits(needed: int, target: Target, what: str, fix: str) -> None:
    """One line, before allocation, when `needed` bytes exceed all the memory the device has."""
    if target.capacity_bytes is not None and needed > target.capacity_bytes:
        raise UserError(f"{what} needs about {gib(needed)}, more than the {gib(target.capacity_bytes)} "
                        f"this {target.label} has; {fix}")


def check_training_fits(cfg, device: str, dtype: str, world_size: int = 1) -> None:
    """Refuse a training step whose plan exceeds the device's memory (a batch of a million, a width
    of 2**20), before the model is built."""
    target = target_of(device, dtype)
    if target.capacity_bytes is None:
        return
    plan = plan_memory(cfg, target, world_size)
    largest = sorted(plan.items.items(), key=lambda item: -item[1])[:2]
    parts = ", ".join(f"{name} {gib(size)}" for name, size in largest)
    refuse_unless_it_fits(plan.total_bytes, target, f"a training step of this {cfg.model} ({parts})",
                          "lower batch_size (raise gradient_accumulation_steps to keep the tokens per "
                          "step), block_size or the model's size; check.py CONFIG --memory shows the plan")


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's parameters and buffers (it may live on the meta device)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def sampling_bytes(model, batch: int, new_tokens: int, element: int) -> int:
    """What generation adds to the weights: the key/value cache of `batch` rows over the whole
    context (models.layers.KVCache preallocates it), one step's fp32 logits and probabilities, and
    the growing (batch, prompt + new_tokens) int64 ids, held twice while each step appends."""
    cfg = model.config
    head_size = cfg.n_embd // cfg.n_head
    cache = 2 * cfg.n_layer * batch * (cfg.n_kv_head or cfg.n_head) * cfg.block_size * head_size * element
    ids = 2 * batch * (cfg.block_size + new_tokens) * 8
    return cache + batch * cfg.vocab_size * 4 * 2 + ids


def check_sampling_fits(model, num_samples: int, new_tokens: int, device: str, dtype: str,
                        keys: str = "num_samples, max_new_tokens") -> None:
    """Refuse a generation whose cache, logits and ids exceed the device's memory; the message names
    `keys`, the config keys that set num_samples and new_tokens."""
    target = target_of(device, dtype)
    element = next(model.parameters()).element_size()  # the cache takes the weights' dtype
    needed = model_bytes(model) + sampling_bytes(model, num_samples, new_tokens, element)
    refuse_unless_it_fits(needed, target, f"sampling {num_samples:,} rows of {new_tokens:,} new tokens "
                          "(the key/value cache over the whole context, the logits, the ids)",
                          f"lower {keys} or block_size")
