"""The teacher experiment 16 compares a model with: the run named by distill_from (the run it learned
from), else the experiment-only key teacher_run (a model trained without a teacher: a scratch arm, or
another seed of the teacher). Loaded and checked once, before any experiment runs, so a teacher that
cannot be compared is refused in one line and no report is half written."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import (
    architecture_of,
    checkpoint_path,
    load_checkpoint,
    model_from_checkpoint,
    tokenizer_of,
)
from core.config import Config
from core.errors import UserError
from core.tokenizer import Tokenizer
from models import MODELS, Transformer


@dataclass
class Teacher:
    model: Transformer  # fp32, eval mode, on the audited model's device
    model_name: str
    checkpoint: str  # the file it came from
    iter_num: int | None
    # The audited checkpoint itself: every agreement would be perfect by construction.
    is_the_model: bool


def teacher_run(cfg: Config) -> str:
    """distill_from when set, else teacher_run; '' when neither names a teacher. Two different runs
    named by both are refused: the model's own teacher is the one it learned from."""
    named = {checkpoint_path(run).resolve() for run in (cfg.distill_from, cfg.teacher_run) if run}
    if len(named) > 1:
        raise UserError(f"teacher_run={cfg.teacher_run} and distill_from={cfg.distill_from} name two "
                        "teachers; experiment 16 compares a distilled model with its own teacher: drop "
                        "--teacher_run")
    return cfg.distill_from or cfg.teacher_run


def load_teacher(cfg: Config, model: Transformer, model_name: str, tokenizer: Tokenizer, model_file: str,
                 device: torch.device) -> Teacher:
    """The teacher, refused in one line unless both models are reflow-family with the same number of
    signals S (signal s is paired with signal s), the same tokenizer (token v means one token in
    both) and a context at least as long as the model's (both read the model's windows)."""
    run = teacher_run(cfg)
    if not run:
        raise UserError("experiment 16 compares the model with a teacher and none is named; give "
                        "--teacher_run=RUN (a run directory or checkpoint)")
    file = checkpoint_path(run)
    checkpoint = load_checkpoint(run)
    name, architecture = architecture_of(checkpoint)
    for what, kind, has_signals in (("this model", model_name, model.has_recipes),
                                    (f"the teacher {file}", name, MODELS[name].has_recipes)):
        if not has_signals:
            raise UserError(f"experiment 16 pairs the signals (W_basis rows) of two reflow-family models, "
                            f"but {what} is a {kind} model with none; compare reflow runs (a post-hoc "
                            "factorization has no signals that two models share)")
    theirs, ours = architecture.n_signals, model.config.n_signals
    if theirs != ours:
        raise UserError(f"the teacher {file} has S = {theirs} signals and this model S = {ours}; "
                        "experiment 16 pairs signal s with signal s, so both need the same n_signals")
    their_tokens = tokenizer_of(checkpoint)
    same_ids = np.array_equal(their_tokens.gpt2_ids, tokenizer.gpt2_ids)
    if their_tokens.remapped != tokenizer.remapped or not same_ids:
        raise UserError(f"the teacher {file} has another vocabulary than this model "
                        f"({their_tokens.describe()} vs {tokenizer.describe()}): its token ids mean other "
                        "tokens; compare models trained with the same vocab and data")
    if architecture.block_size < model.config.block_size:
        raise UserError(f"the teacher {file} reads at most {architecture.block_size} tokens and this "
                        f"model {model.config.block_size}; experiment 16 reads the text in this model's "
                        "windows, so give a teacher with a block_size at least as long")
    teacher = model_from_checkpoint(checkpoint).to(device=device, dtype=torch.float32).eval()
    return Teacher(teacher, name, str(file), checkpoint.get("iter_num"),
                   is_the_model=file.resolve() == Path(model_file).resolve())
