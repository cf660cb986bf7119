"""How the model and its optimizer are spread over data-parallel ranks (config key `shard`).

- "none":      every rank holds the whole model, its gradients and AdamW's state; gradients are
               averaged by DistributedDataParallel (DDP).
- "optimizer": ZeRO-1 with torch's ZeroRedundancyOptimizer: DDP as above, but each rank keeps AdamW's
               state (2 x 4 bytes per parameter) for its share of the parameters only, updates that
               share, and broadcasts it. Saves (W - 1) / W of the optimizer state.
- "full":      ZeRO-3 with FSDP2's fully_shard: each rank keeps 1/W of the weights, gradients and
               optimizer state; every block gathers its weights for its forward and backward and
               reduce-scatters its gradients. Works on NCCL (GPU) and gloo (CPU) in torch >= 2.6;
               not with float16 (GradScaler would see only this rank's gradient shard).

Whatever the sharding, a checkpoint is one file of full tensors in the layout a single process
writes (the model's state dict; AdamW's state dict keyed by parameter index), so it resumes on any
number of processes under any sharding, and check.py, sample.py and the suite read it as usual.
Gathering it is collective: every rank calls model_state() and optimizer_state(); rank 0 gets it.
"""

import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel as DDP

from core.config import Config
from core.errors import UserError
from core.hardware import resolve_dtype
from training.distributed import Distributed
from training.optimization import make_optimizer, parameter_groups


@dataclass
class ShardedTraining:
    """The pieces train.py runs, as the chosen sharding arranged them."""

    model: nn.Module  # the model whose parameters the optimizer holds (FSDP-managed under "full")
    forward_model: nn.Module  # model, compiled if cfg.compile: evaluation runs it
    train_model: nn.Module  # forward_model, in DDP when data-parallel (except "full"): steps run it
    optimizer: torch.optim.Optimizer
    shard: str
    dist: Distributed
    model_class: type  # the architecture's class (FSDP swaps the model's class for a subclass)

    def model_state(self) -> dict[str, torch.Tensor]:
        """The full state dict, on CPU, on rank 0 (collective under "full"; others get {})."""
        if self.shard != "full":
            return self.model.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(self.model, options=options)

    def optimizer_state(self) -> dict | None:
        """AdamW's full state dict as one process would write it (collective; None off rank 0)."""
        if self.shard == "optimizer":
            self.optimizer.consolidate_state_dict(to=0)
            return self.optimizer.state_dict() if self.dist.is_master else None
        if self.shard == "full":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            state = get_optimizer_state_dict(self.model, self.optimizer, options=options)
            return by_index(state, self.model) if self.dist.is_master else None
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict) -> None:
        """Resume from a checkpoint's full optimizer state, whatever sharding wrote it."""
        if self.shard == "full":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.model, self.optimizer, by_name(state, self.model),
                                     options=StateDictOptions(full_state_dict=True))
        else:  # ZeroRedundancyOptimizer takes the full state and keeps its rank's share
            self.optimizer.load_state_dict(state)

    def whole_model(self) -> nn.Module | None:
        """A model a single rank can run alone (sampling at the end): under "full", a copy holding the
        gathered weights on rank 0 (collective; None elsewhere); otherwise the model itself."""
        if self.shard != "full":
            return self.model
        state = self.model_state()
        if not self.dist.is_master:
            return None
        copy = self.model_class(self.model.config)
        copy.load_state_dict(state)
        return copy.to(self.dist.device)


def check_shard(cfg: Config, dist: Distributed) -> None:
    """Refuse a sharding this run cannot do, in one line, before anything is built."""
    if cfg.shard == "full" and dist.enabled and resolve_dtype(cfg.dtype, dist.device) == "float16":
        # GradScaler would look for inf/NaN in this rank's gradient shard only, and ranks could
        # disagree on skipping a step; no sharded scaler is wired up for FSDP2 here.
        raise UserError("shard='full' does not support float16 (loss scaling over sharded gradients); "
                        "use shard='optimizer' on GPUs without bf16 (T4, V100), or dtype='bfloat16'")
    if cfg.shard == "full" and dist.enabled and cfg.eval_iters % dist.world_size:
        raise UserError(f"shard='full' needs eval_iters ({cfg.eval_iters}) to be a multiple of the number "
                        f"of processes ({dist.world_size}): every rank runs every sharded forward")


def shard_for_training(model: nn.Module, cfg: Config, dist: Distributed) -> ShardedTraining:
    """Move the model to this rank's device and wrap it and its optimizer for cfg.shard."""
    check_shard(cfg, dist)
    device, model_class = dist.device, type(model)
    model.to(device)
    shard = cfg.shard if dist.enabled else "none"  # a world of one has nothing to shard
    if shard == "full":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # one all-gather per block, so only one block is ever whole
            fully_shard(block)
        fully_shard(model)
        optimizer = make_optimizer(model, cfg, device)  # over the shards (DTensors) this rank holds
        forward_model = torch.compile(model) if cfg.compile else model
        return ShardedTraining(model, forward_model, forward_model, optimizer, shard, dist, model_class)
    if shard == "optimizer":
        fused = device.split(":")[0] in ("cuda", "cpu")
        optimizer = ZeroRedundancyOptimizer(parameter_groups(model, cfg), optimizer_class=torch.optim.AdamW,
                                            lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused)
    else:
        optimizer = make_optimizer(model, cfg, device)
    forward_model = torch.compile(model) if cfg.compile else model
    train_model = forward_model
    if dist.enabled:
        device_ids = [dist.local_rank] if device.startswith("cuda") else None
        # The only buffers are RoPE tables, equal on every rank: no broadcast before each forward.
        # (torch 2.13 renames the argument and warns; the old name works on every torch >= 2.5.)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*broadcast_buffers", category=FutureWarning)
            train_model = DDP(forward_model, device_ids=device_ids, broadcast_buffers=False)
    return ShardedTraining(model, forward_model, train_model, optimizer, shard, dist, model_class)


def parameter_names(model: nn.Module) -> list[str]:
    """Parameter names in the order make_optimizer's groups list them (the index AdamW keys by)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in parameter_groups(model, Config()) for p in group["params"]]


def by_index(state: dict, model: nn.Module) -> dict:
    """A name-keyed optimizer state dict (torch.distributed.checkpoint's) keyed by index, as AdamW's."""
    index = {name: i for i, name in enumerate(parameter_names(model))}
    return {"state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [{**group, "params": [index[name] for name in group["params"]]}
                             for group in state["param_groups"]]}


def by_name(state: dict, model: nn.Module) -> dict:
    """The inverse of by_index."""
    names = parameter_names(model)
    return {"state": {names[i]: value for i, value in state["state"].items()},
            "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                             for group in state["param_groups"]]}
