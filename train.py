"""Train any of the five models, in one process or data-parallel over many.

    python train.py config/train_shakespeare_reflow.py     # the default: ~10 min on 2 CPU cores
    python train.py config/train_shakespeare_reflow.py --init_from=resume
    torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1.py
    python train.py --help                                 # every key, by group, with its default

init_from decides where the weights come from:
  'scratch'  a new model as the config describes it;
  'resume'   out_dir/ckpt.pt, continued exactly (weights, optimizer, step; the data position and
             every random draw are functions of the seed and the step);
  a path     a checkpoint file or run directory to fine-tune: its weights and architecture, a
             fresh optimizer, step 0.

The memory plan of a step (core/memory_plan.py) is checked before the model is built: on CUDA against
the GPU, refused in one line naming settings that fit; elsewhere against the machine's memory
(training/memory_check.py; --memory_check=False runs anyway).

Checkpoints go to out_dir/ckpt.pt at each evaluation (always, or only when val loss improves, per
always_save_checkpoint), at the end, and on Ctrl-C or SIGTERM. The run ends by printing a sample.

The file reads top to bottom: `run` = `setup` (everything a user can get wrong is checked before
anything is written; returns a TrainingState) -> `fit` (the loop: `validate` when due, then a
`training_step`; `save` writes the checkpoint) -> a closing sample.
"""

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from core.checkpoint import (
    CHECKPOINT_NAME,
    check_same_architecture,
    ensure_writable_dir,
    load_checkpoint,
    model_args_of,
    model_from_checkpoint,
    save_checkpoint,
    tokenizer_of,
    vocab_entry,
    with_architecture_of,
)
from core.closed_output import output_may_close
from core.config import DEFAULT_VOCAB_SIZE, Config, load_config, parse_args
from core.errors import UserError, exit_on_user_error
from core.hardware import autocast, keep_freed_memory, resolve_dtype
from core.memory_plan import check_sampling_fits
from core.out_dir_lock import OutDirLock
from core.run_files import check_optimizer_fits, check_resumable
from core.tokenizer import Tokenizer
from core.wandb_login import check_wandb_ready
from models import ModelConfig, Transformer, build_model
from training.batches import Batches, corpus_tokenizer, seed_for
from training.distillation import Distillation, share_and_freeze
from training.distributed import Distributed, collective_failures_reported, init_distributed
from training.memory_check import check_memory_plan
from training.optimization import (
    NonFiniteUpdate,
    estimate_loss,
    learning_rate_at,
    make_grad_scaler,
    parameter_groups,
    train_step,
)
from training.regularizers import Regularizers
from training.run_log import RunLog
from training.sharding import ShardedTraining, shard_for_training
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


@dataclass
class TrainingState:
    """Everything the loop works with: what setup builds once, and the counters a checkpoint saves."""

    cfg: Config
    dist: Distributed
    device: str
    dtype: str
    sharded: ShardedTraining  # the model and optimizer as this rank holds them: DDP, ZeRO-1 or FSDP2
    model: Transformer  # sharded.model: its config, parameter count and FLOPs
    tokenizer: Tokenizer  # the model's token ids <-> GPT-2's (vocab='corpus' remaps them)
    scaler: torch.amp.GradScaler
    regularizers: Regularizers  # penalties added to the loss (all off by default)
    batches: Batches
    log: RunLog
    ckpt_file: Path
    out_dir_lock: OutDirLock | contextlib.nullcontext  # rank 0 holds out_dir until the run ends
    evaluated_at: int | None  # the step whose evaluation is done (a resumed step's, unless a stop cut it)
    iter_num: int = 0
    best_val_loss: float = math.inf
    saved_at: int | None = None  # the step of the last save, so a stop does not write it twice
    distillation: Distillation | None = None  # the teacher whose logits the student learns (distill_from)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    config_file, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    train(load_config(config_file, overrides))


def train(cfg: Config) -> RunResult:
    dist = init_distributed(cfg.device, cfg.backend, cfg.collective_timeout_s)
    try:  # a reader that exits (a pipe, a killed study) must not cost the run its save on stop
        with output_may_close(), collective_failures_reported(dist, cfg.collective_timeout_s):
            return run(cfg, dist)
    finally:
        dist.close()


def run(cfg: Config, dist: Distributed) -> RunResult:
    """Set up, train to max_iters (or until told to stop), and show a sample of what was learned."""
    state = setup(cfg, dist)
    with state.out_dir_lock:
        with state.log, StopRequest(dist) as stop_request:
            result = fit(state, stop_request)
        if not result.stopped and state.cfg.max_new_tokens > 0:
            whole = state.sharded.whole_model()  # collective under shard="full"
            if dist.is_master:
                print_sample(whole, state.tokenizer, state.cfg, state.device, state.dtype)
    return result


# --- set-up: every check a user can fail comes before anything is written ----------------------
def setup(cfg: Config, dist: Distributed) -> TrainingState:
    """The model (new, resumed or fine-tuned), its optimizer, the data and the log, on this rank."""
    if cfg.wandb_log and dist.is_master:
        check_wandb_ready()  # before any work: a missing login is one line, not a traceback an hour in
    if cfg.gradient_accumulation_steps % dist.world_size:
        raise UserError(f"gradient_accumulation_steps ({cfg.gradient_accumulation_steps}) must be a "
                        f"multiple of the number of processes ({dist.world_size})")
    device, dtype = dist.device, resolve_dtype(cfg.dtype, dist.device)
    if device == "cpu":
        keep_freed_memory()  # reuse the big logits buffers instead of page-faulting them back each step
    ckpt_file = Path(cfg.out_dir) / CHECKPOINT_NAME
    data_folder = Path(cfg.data_dir) / cfg.dataset
    if dist.is_master:
        prepare_if_missing(data_folder, cfg.dataset)
    dist.barrier()
    model, resume, cfg, tokenizer = load_model(cfg, ckpt_file, data_folder, dist, dtype)
    share_and_freeze(model, cfg, resume)  # init_basis_from, freeze_basis/recipes: before the optimizer
    distillation = Distillation.from_config(cfg, model, device)  # the teacher, if distill_from
    check_closing_sample(cfg, model, tokenizer, device, dtype)
    batches = Batches(data_folder, cfg.block_size, cfg.batch_size, cfg.seed, tokenizer)
    ensure_writable_dir(cfg.out_dir)

    if resume:  # before sharding splits the parameters: the saved state covers them all
        shapes = [[p.shape for p in group["params"]] for group in parameter_groups(model, cfg)]
        check_optimizer_fits(resume["optimizer"], shapes, ckpt_file)
    sharded = shard_for_training(model, cfg, dist)  # DDP, ZeRO-1 or FSDP2, per cfg.shard
    model = sharded.model
    scaler = make_grad_scaler(device, dtype)  # loss scaling, for float16 only
    iter_num, best_val_loss = 0, math.inf
    if resume:
        sharded.load_optimizer_state(resume["optimizer"])
        if resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        iter_num, best_val_loss = resume["iter_num"], resume["best_val_loss"]
    regularizers = Regularizers.from_config(cfg, model.config.n_layer, model.has_recipes)
    lock = OutDirLock(cfg.out_dir) if dist.is_master else contextlib.nullcontext()  # a second run: refused
    try:
        log = start_log(cfg, dist, model, device, dtype, iter_num, resume)
    except BaseException:
        lock.__exit__(None, None, None)  # a set-up that fails leaves the folder free
        raise
    log.regularizers = regularizers
    if not resume and dist.is_master and ckpt_file.exists():
        log.print(f"note: {ckpt_file} exists and will be replaced at the first save "
                  "(--init_from=resume continues it instead)")
    return TrainingState(cfg, dist, device, dtype, sharded, model, tokenizer, scaler, regularizers, batches,
                         log, ckpt_file, lock, evaluated_at=evaluated_at(resume, cfg), iter_num=iter_num,
                         best_val_loss=best_val_loss, saved_at=iter_num if resume else None,
                         distillation=distillation)


def evaluated_at(resume: dict | None, cfg: Config) -> int | None:
    """A checkpoint is written after its step's evaluation, so a resumed run does not repeat it,
    unless a stop request cut that evaluation short (the checkpoint says so)."""
    if resume is None or cfg.eval_only or not resume.get("evaluated", True):
        return None
    return resume["iter_num"]


def load_model(cfg: Config, ckpt_file: Path, data_folder: Path, dist: Distributed, dtype: str
               ) -> tuple[Transformer, dict | None, Config, Tokenizer]:
    """The model to train, the checkpoint to resume from (None unless resuming), the config, whose
    architecture keys (and vocab) a fine-tune takes from its checkpoint, and the model's tokenizer.
    A step whose memory plan exceeds the device is refused before the model is built.

    Under vocab='corpus' the model's vocab_size is the corpus's; the config keeps its own unset
    value, so a saved config reads as the user wrote it and compares equal to the next run's."""
    if cfg.init_from == "scratch":
        architecture, tokenizer = cfg.model_config(), Tokenizer(cfg.vocab_size)
        if cfg.vocab == "corpus":
            tokenizer = corpus_tokenizer(data_folder)
            architecture.vocab_size = tokenizer.vocab_size
        sized = replace(cfg, vocab_size=architecture.vocab_size)
        check_memory_plan(sized, dist.device, dtype, dist.world_size)
        torch.manual_seed(cfg.seed)  # every rank builds the same initial weights
        return build_model(cfg.model, architecture), None, cfg, tokenizer
    checkpoint = load_checkpoint(ckpt_file if cfg.init_from == "resume" else cfg.init_from)
    for key in ("dropout", *ModelConfig.EXECUTION_KEYS):  # training choices, not the architecture
        checkpoint["model_args"][key] = getattr(cfg, key)
    tokenizer = tokenizer_of(checkpoint)
    vocab = "corpus" if tokenizer.remapped else "gpt2"
    if cfg.init_from == "resume" and cfg.vocab != vocab:
        raise UserError(f"{ckpt_file} was trained with vocab={vocab!r}, the config says {cfg.vocab!r}; "
                        "resume with the config it was trained with")
    if cfg.init_from == "resume":
        if not checkpoint.get("optimizer"):  # e.g. nanoGPT's, whose optimizer state does not map to ours
            raise UserError(f"{ckpt_file} holds no optimizer state to resume; fine-tune from its weights "
                            f"with --init_from={ckpt_file} and another --out_dir")
        check_resumable(checkpoint, ckpt_file)
        architecture = cfg.model_config()
        if vocab == "corpus":  # its size is the checkpoint's, whatever the corpus holds now
            architecture.vocab_size = tokenizer.vocab_size
        check_same_architecture(checkpoint, cfg.model, architecture, ckpt_file)
    else:  # fine-tune from a checkpoint file or run directory: its architecture replaces the config's
        cfg = with_architecture_of(checkpoint, cfg, keep=("block_size",))
        cfg = replace(cfg, vocab=vocab)
        if vocab == "corpus":  # the config's vocab_size stays unset, as from scratch
            cfg = replace(cfg, vocab_size=DEFAULT_VOCAB_SIZE)
    check_memory_plan(replace(cfg, vocab_size=tokenizer.vocab_size), dist.device, dtype, dist.world_size)
    model = model_from_checkpoint(checkpoint)
    if cfg.block_size > model.config.block_size:
        raise UserError(f"block_size {cfg.block_size} is longer than the checkpoint's model was built for "
                        f"({model.config.block_size}); use --block_size={model.config.block_size} or less")
    return model, checkpoint if cfg.init_from == "resume" else None, cfg, tokenizer


def start_log(cfg: Config, dist: Distributed, model: Transformer, device: str, dtype: str, iter_num: int,
              resume: dict | None) -> RunLog:
    """The run's log (console and wandb, rank 0 only), opened with a line that says what runs where."""
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    log = RunLog(cfg, start_iter=iter_num, tokens_per_step=tokens_per_step,
                 flops_per_step=model.flops_per_token(cfg.block_size) * tokens_per_step,
                 device=device, dtype=dtype, world_size=dist.world_size, enabled=dist.is_master,
                 wandb_run_id=resume.get("wandb_run_id") if resume else None)
    log.print(f"{cfg.model}: {model.num_params() / 1e6:.2f}M params | {tokens_per_step:,} tokens per step "
              f"({cfg.gradient_accumulation_steps} x {cfg.batch_size} x {cfg.block_size}, "
              f"{dist.world_size} process{'es' if dist.enabled else ''}) | {device} {dtype} | "
              f"{'resuming at step ' + str(iter_num) if resume else 'init from ' + cfg.init_from}")
    return log


def check_closing_sample(cfg: Config, model: Transformer, tokenizer: Tokenizer, device: str,
                         dtype: str) -> None:
    """The run ends with a sample; what it needs is checked now, not after hours of training."""
    if cfg.max_new_tokens > 0:
        try:
            tokenizer.encode(SAMPLE_PROMPT)
        except UserError:
            raise UserError(f"the closing sample's prompt {SAMPLE_PROMPT!r} has tokens outside this model's "
                            f"vocabulary ({tokenizer.describe()}); set --max_new_tokens=0 to skip it")
        check_sampling_fits(model, 1, cfg.max_new_tokens, device, dtype)


# --- the loop ---------------------------------------------------------------------------------
def fit(state: TrainingState, stop_request: StopRequest) -> RunResult:
    """Evaluate when due, then take a step, until max_iters or a stop request; a stop saves first."""
    cfg = state.cfg
    result = RunResult(state.iter_num, state.best_val_loss)
    while True:
        due = state.iter_num % cfg.eval_interval == 0 or state.iter_num >= cfg.max_iters
        if due and state.iter_num != state.evaluated_at and not result.stopped:
            validate(state, result, stop_request)
        if result.stopped or state.iter_num >= cfg.max_iters or cfg.eval_only:
            break
        training_step(state, result)
        result.stopped = stop_request.agreed()
    if result.stopped:
        if state.saved_at != state.iter_num and not cfg.eval_only:
            save(state, "stopped")
        state.log.print(f"stopped at step {state.iter_num}: saved {state.ckpt_file}; "
                        f"resume with: --init_from=resume --out_dir={cfg.out_dir}")
    result.iter_num, result.best_val_loss = state.iter_num, state.best_val_loss
    return result


def training_step(state: TrainingState, result: RunResult) -> None:
    """One optimizer step over the global batch of step iter_num, logged; then iter_num + 1."""
    cfg, dist, step = state.cfg, state.dist, state.iter_num
    lr = learning_rate_at(step, cfg)
    torch.manual_seed(seed_for(cfg.seed, "dropout", step, dist.rank))
    start = time.perf_counter()
    micro_batches = state.batches.train_micro_batches(
        step, cfg.gradient_accumulation_steps, dist.rank, dist.world_size, state.device)
    try:
        loss = train_step(state.sharded.train_model, state.sharded.optimizer, state.scaler, micro_batches,
                          lr=lr, grad_clip=cfg.grad_clip, device=state.device, dtype=state.dtype, dist=dist,
                          regularizers=state.regularizers, distillation=state.distillation,
                          undo_non_finite=cfg.on_nonfinite == "skip")
        if not math.isfinite(loss):
            state.log.print(non_finite(cfg, f"loss {loss} at step {step}", state.ckpt_file, "step skipped"))
    except NonFiniteUpdate as overflow:
        what = f"weights after step {step} ({overflow})"
        state.log.print(non_finite(cfg, what, state.ckpt_file, "step skipped"))
        loss = math.nan  # the step was not taken: recorded as a skipped step is
    result.losses[step] = loss
    state.iter_num += 1
    state.log.step(state.iter_num, loss, lr, time.perf_counter() - start)


def validate(state: TrainingState, result: RunResult, stop_request: StopRequest) -> None:
    """Train and val loss at this step, logged; a checkpoint when the val loss improved (or always,
    per always_save_checkpoint), never of a non-finite loss, step 0 or an eval_only run. A stop
    request arriving during the evaluation cuts it short (result.stopped)."""
    cfg, step = state.cfg, state.iter_num
    losses = estimate_loss(state.sharded.forward_model, state.batches, cfg.eval_iters, device=state.device,
                           dtype=state.dtype, dist=state.dist, regularizers=state.regularizers,
                           should_stop=stop_request.agreed)
    if losses is None:
        result.stopped = True
        return
    result.evaluations[step], state.evaluated_at = losses, step
    note = ""
    if not math.isfinite(losses["val"]):
        note = non_finite(cfg, f"val loss {losses['val']} at step {step}", state.ckpt_file, "not saved")
    elif losses["val"] < state.best_val_loss or cfg.always_save_checkpoint:
        state.best_val_loss = min(state.best_val_loss, losses["val"])
        if step > 0 and not cfg.eval_only:
            note = save(state, "best" if losses["val"] == state.best_val_loss else "latest")
    state.log.evaluation(step, losses, note)


def save(state: TrainingState, reason: str) -> str:
    """Write out_dir/ckpt.pt (rank 0 only; atomically) with everything an exact resume needs."""
    state.saved_at = state.iter_num
    model_state, optimizer_state = state.sharded.model_state(), state.sharded.optimizer_state()  # collective
    if state.dist.is_master:
        save_checkpoint({
            "model": model_state, "optimizer": optimizer_state,
            "model_args": model_args_of(state.cfg.model, state.model), **vocab_entry(state.tokenizer),
            "iter_num": state.iter_num,
            "best_val_loss": state.best_val_loss, "config": state.cfg.to_dict(),
            "scaler": state.scaler.state_dict(), "wandb_run_id": state.log.wandb_run_id,
            "evaluated": state.evaluated_at == state.iter_num,  # False: a stop cut this step's evaluation
        }, state.ckpt_file)
    return f"{reason}: saved {state.ckpt_file}"


# --- helpers ----------------------------------------------------------------------------------
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
def print_sample(model: Transformer, tokenizer: Tokenizer, cfg: Config, device: str, dtype: str) -> None:
    """A sample from the trained model, generated with the key/value cache."""
    model.eval()
    prompt = torch.tensor([tokenizer.encode(SAMPLE_PROMPT)], device=device)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    with autocast(device, dtype):
        ids = model.generate(prompt, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                             generator=generator, valid_vocab_size=tokenizer.n_vocab)[0].tolist()
    print(f"--- sample (temperature {cfg.temperature}, top_k {cfg.top_k}) ---\n{tokenizer.decode(ids)}\n---")


if __name__ == "__main__":
    main()
