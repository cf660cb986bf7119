"""Train any of the five models, in one process or data-parallel over many.

    python train.py config/train_shakespeare_reflow.py     # the default: ~10 min on 2 CPU cores
    python train.py config/train_shakespeare_reflow.py --init_from=resume
    torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1.py

init_from decides where the weights come from:
  'scratch'  a new model as the config describes it;
  'resume'   out_dir/ckpt.pt, continued exactly (weights, optimizer, step; the data position and
             every random draw are functions of the seed and the step);
  a path     a checkpoint file or run directory to fine-tune: its weights and architecture, a
             fresh optimizer, step 0.

Checkpoints go to out_dir/ckpt.pt at each evaluation (always, or only when val loss improves, per
always_save_checkpoint), at the end, and on Ctrl-C or SIGTERM. The run ends by printing a sample.
"""

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.checkpoint import (
    CHECKPOINT_NAME,
    check_same_architecture,
    ensure_writable_dir,
    load_checkpoint,
    model_from_checkpoint,
    model_name_of,
    save_checkpoint,
)
from core.config import Config, load_config, parse_args
from core.errors import UserError, exit_on_user_error
from core.hardware import autocast, keep_freed_memory, resolve_dtype
from core.tokenizer import decode, encode, get_tokenizer
from core.wandb_login import check_wandb_ready
from models import Transformer, build_model
from training.batches import Batches, seed_for
from training.distributed import Distributed, collective_failures_reported, init_distributed
from training.optimization import estimate_loss, learning_rate_at, make_grad_scaler, train_step
from training.regularizers import Regularizers
from training.run_log import RunLog
from training.sharding import shard_for_training
from training.stop_request import StopRequest

EMBEDDED_DATASET = "shakespeare"  # committed as text; tokenized on first use
SAMPLE_PROMPT = "\n"


@dataclass
class RunResult:
    """What a run did, for callers (tests, scripts) that run train() in-process."""

    iter_num: int
    best_val_loss: float
    losses: dict[int, float] = field(default_factory=dict)  # step -> loss of that step's global batch
    evaluations: dict[int, dict[str, float]] = field(default_factory=dict)
    stopped: bool = False  # by Ctrl-C / SIGTERM


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    config_file, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    train(load_config(config_file, overrides))


def train(cfg: Config) -> RunResult:
    dist = init_distributed(cfg.device, cfg.backend, cfg.collective_timeout_s)
    try:
        with collective_failures_reported(dist, cfg.collective_timeout_s):
            return run(cfg, dist)
    finally:
        dist.close()


def run(cfg: Config, dist: Distributed) -> RunResult:
    # --- set-up: every check a user can fail comes before anything is written ------------------
    if cfg.wandb_log and dist.is_master:
        check_wandb_ready()
    for key in ("batch_size", "block_size", "gradient_accumulation_steps", "eval_interval", "eval_iters",
                "log_interval"):
        if getattr(cfg, key) < 1:
            raise UserError(f"{key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.gradient_accumulation_steps % dist.world_size:
        raise UserError(f"gradient_accumulation_steps ({cfg.gradient_accumulation_steps}) must be a "
                        f"multiple of the number of processes ({dist.world_size})")
    if cfg.on_nonfinite not in ("stop", "skip"):
        raise UserError(f"on_nonfinite must be 'stop' or 'skip', got {cfg.on_nonfinite!r}")
    device, dtype = dist.device, resolve_dtype(cfg.dtype, dist.device)
    if device == "cpu":
        keep_freed_memory()  # reuse the big logits buffers instead of page-faulting them back each step
    ckpt_file = Path(cfg.out_dir) / CHECKPOINT_NAME
    model, resume, cfg = load_model(cfg, ckpt_file)
    data_folder = Path(cfg.data_dir) / cfg.dataset
    if dist.is_master:
        prepare_if_missing(data_folder, cfg.dataset)
    dist.barrier()
    batches = Batches(data_folder, cfg.block_size, cfg.batch_size, cfg.seed, model.config.vocab_size)
    ensure_writable_dir(cfg.out_dir)

    sharded = shard_for_training(model, cfg, dist)  # DDP, ZeRO-1 or FSDP2, per cfg.shard
    model, fast_model, train_model = sharded.model, sharded.forward_model, sharded.train_model
    optimizer = sharded.optimizer
    scaler = make_grad_scaler(device, dtype)  # loss scaling, for float16 only
    iter_num, best_val_loss = 0, math.inf
    if resume:
        sharded.load_optimizer_state(resume["optimizer"])
        if resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        iter_num, best_val_loss = resume["iter_num"], resume["best_val_loss"]
    regularizers = Regularizers.from_config(cfg, model.config.n_layer, model.has_recipes)

    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    log = RunLog(cfg, start_iter=iter_num, tokens_per_step=tokens_per_step,
                 flops_per_step=model.flops_per_token(cfg.block_size) * tokens_per_step,
                 device=device, dtype=dtype, world_size=dist.world_size, enabled=dist.is_master,
                 wandb_run_id=resume.get("wandb_run_id") if resume else None)
    log.regularizers = regularizers
    log.print(f"{cfg.model}: {model.num_params() / 1e6:.2f}M params | {tokens_per_step:,} tokens per step "
              f"({cfg.gradient_accumulation_steps} x {cfg.batch_size} x {cfg.block_size}, "
              f"{dist.world_size} process{'es' if dist.enabled else ''}) | {device} {dtype} | "
              f"{'resuming at step ' + str(iter_num) if resume else 'init from ' + cfg.init_from}")
    if not resume and dist.is_master and ckpt_file.exists():
        log.print(f"note: {ckpt_file} exists and will be replaced at the first save "
                  "(--init_from=resume continues it instead)")

    def save(reason: str) -> str:
        nonlocal saved_at
        saved_at = iter_num
        model_state, optimizer_state = sharded.model_state(), sharded.optimizer_state()  # collective
        if dist.is_master:
            save_checkpoint({
                "model": model_state, "optimizer": optimizer_state,
                "model_args": dataclasses.asdict(model.config), "iter_num": iter_num,
                "best_val_loss": best_val_loss, "config": cfg.to_dict(),
                "scaler": scaler.state_dict(), "wandb_run_id": log.wandb_run_id,
                "evaluated": evaluated_at == iter_num,  # False: a stop cut this step's evaluation short
            }, ckpt_file)
        return f"{reason}: saved {ckpt_file}"

    # --- the loop -------------------------------------------------------------------------------
    result = RunResult(iter_num, best_val_loss)
    # A checkpoint is written after its step's evaluation, so a resumed run does not repeat it.
    evaluated_at = iter_num if resume and resume.get("evaluated", True) and not cfg.eval_only else None
    saved_at = iter_num if resume else None
    stopping = False
    with log, StopRequest(dist) as stop_request:
        while True:
            eval_due = iter_num % cfg.eval_interval == 0 or iter_num >= cfg.max_iters
            if eval_due and iter_num != evaluated_at and not stopping:
                losses = estimate_loss(fast_model, batches, cfg.eval_iters, device=device, dtype=dtype,
                                       dist=dist, regularizers=regularizers,
                                       should_stop=stop_request.agreed)
                stopping = losses is None  # a stop request cut the evaluation short
                if not stopping:
                    result.evaluations[iter_num], evaluated_at = losses, iter_num
                    note = ""
                    if not math.isfinite(losses["val"]):
                        what = f"val loss {losses['val']} at step {iter_num}"
                        note = non_finite(cfg, what, ckpt_file, "not saved")
                    elif losses["val"] < best_val_loss or cfg.always_save_checkpoint:
                        best_val_loss = min(best_val_loss, losses["val"])
                        if iter_num > 0 and not cfg.eval_only:
                            note = save("best" if losses["val"] == best_val_loss else "latest")
                    log.evaluation(iter_num, losses, note)
            if stopping:
                if saved_at != iter_num and not cfg.eval_only:
                    save("stopped")
                log.print(f"stopped at step {iter_num}: saved {ckpt_file}; "
                          f"resume with: --init_from=resume --out_dir={cfg.out_dir}")
                break
            if iter_num >= cfg.max_iters or cfg.eval_only:
                break

            lr = learning_rate_at(iter_num, cfg)
            torch.manual_seed(seed_for(cfg.seed, "dropout", iter_num, dist.rank))
            start = time.perf_counter()
            micro_batches = batches.train_micro_batches(
                iter_num, cfg.gradient_accumulation_steps, dist.rank, dist.world_size, device)
            loss = train_step(train_model, optimizer, scaler, micro_batches, lr=lr,
                              grad_clip=cfg.grad_clip, device=device, dtype=dtype, dist=dist,
                              regularizers=regularizers)
            if not math.isfinite(loss):
                log.print(non_finite(cfg, f"loss {loss} at step {iter_num}", ckpt_file, "step skipped"))
            result.losses[iter_num] = loss
            iter_num += 1
            log.step(iter_num, loss, lr, time.perf_counter() - start)
            stopping = stop_request.agreed()

    result.iter_num, result.best_val_loss, result.stopped = iter_num, best_val_loss, stopping
    if not stopping and cfg.max_new_tokens > 0:
        whole = sharded.whole_model()  # collective under shard="full"
        if dist.is_master:
            print_sample(whole, cfg, device, dtype)
    return result


def load_model(cfg: Config, ckpt_file: Path) -> tuple[Transformer, dict | None, Config]:
    """The model to train, the checkpoint to resume from (None unless resuming), and the config,
    whose architecture keys a fine-tune takes from its checkpoint."""
    if cfg.init_from == "scratch":
        torch.manual_seed(cfg.seed)  # every rank builds the same initial weights
        return build_model(cfg.model, cfg.model_config()), None, cfg
    checkpoint = load_checkpoint(ckpt_file if cfg.init_from == "resume" else cfg.init_from)
    checkpoint["model_args"]["dropout"] = cfg.dropout  # a training choice, not the architecture
    if cfg.init_from == "resume":
        if not checkpoint.get("optimizer"):  # e.g. nanoGPT's, whose optimizer state does not map to ours
            raise UserError(f"{ckpt_file} holds no optimizer state to resume; fine-tune from its weights "
                            f"with --init_from={ckpt_file} and another --out_dir")
        check_same_architecture(checkpoint, cfg.model, cfg.model_config(), ckpt_file)
    else:  # fine-tune from a checkpoint file or run directory: its architecture replaces the config's
        config_keys = {f.name for f in dataclasses.fields(Config)}
        architecture = {k: v for k, v in checkpoint["model_args"].items()
                        if k in config_keys and k != "block_size"}
        cfg = dataclasses.replace(cfg, model=model_name_of(checkpoint), **architecture)
    model = model_from_checkpoint(checkpoint)
    if cfg.block_size > model.config.block_size:
        raise UserError(f"block_size {cfg.block_size} is longer than the checkpoint's model was built for "
                        f"({model.config.block_size}); use --block_size={model.config.block_size} or less")
    return model, checkpoint if cfg.init_from == "resume" else None, cfg


def non_finite(cfg: Config, what: str, ckpt_file: Path, skipped: str) -> str:
    """Stop on a NaN/inf loss, or say what was skipped, per on_nonfinite."""
    if cfg.on_nonfinite == "stop":
        kept = f"; {ckpt_file} keeps the last good state" if ckpt_file.exists() else ""
        raise UserError(f"non-finite {what}{kept}; lower learning_rate, or set --on_nonfinite=skip")
    return f"non-finite {what}: {skipped}"


def prepare_if_missing(folder: Path, dataset: str) -> None:
    """Tokenize the embedded corpus on first use, so the default run needs no extra command."""
    missing = not (folder / "train.bin").exists() or not (folder / "val.bin").exists()
    if dataset == EMBEDDED_DATASET and missing and (folder / "input.txt").exists():
        from data.shakespeare.prepare import prepare

        prepare(folder)


@torch.no_grad()
def print_sample(model: Transformer, cfg: Config, device: str, dtype: str) -> None:
    """A sample from the trained model, generated with the key/value cache."""
    model.eval()
    prompt = torch.tensor([encode(SAMPLE_PROMPT)], device=device)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    with autocast(device, dtype):
        ids = model.generate(prompt, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                             generator=generator)[0].tolist()
    known = [i for i in ids if i < get_tokenizer().n_vocab]  # ids past GPT-2's 50257 are padding
    print(f"--- sample (temperature {cfg.temperature}, top_k {cfg.top_k}) ---\n{decode(known)}\n---")


if __name__ == "__main__":
    main()
