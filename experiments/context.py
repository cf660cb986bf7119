"""What every experiment is handed: the trained model, its random-init control, the config, and text.

The control is the same architecture at random initialization, built from the checkpoint's
model_args with a fixed seed: a metric that claims structure must beat it, or the structure came
from the architecture and the metric, not from training.
"""

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import checkpoint_path, load_checkpoint, model_from_checkpoint, model_name_of
from core.config import Config
from core.errors import UserError
from core.hardware import resolve_device
from core.tokenizer import GPT2_VOCAB_SIZE
from experiments.common import prompt_ids
from models import ModelConfig, Transformer, build_model

REPORTS_DIR_NAME = "audit_reports"
CONTROL_SEEDS = 3  # random-init models per control


@dataclass
class Context:
    model: Transformer
    cfg: Config
    model_name: str
    model_args: dict
    checkpoint: str  # the file the model came from, as the user gave it
    iter_num: int | None
    reports_dir: Path
    wandb_run_id: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    def prompt(self, text: str, key: str) -> torch.Tensor:
        """A config prompt as a (1, T) batch on the model's device."""
        return prompt_ids(text, self.model.config.block_size, self.vocab_size, key).to(self.device)

    def generator(self, salt: int) -> torch.Generator:
        """A generator seeded from the config's seed and a per-experiment salt: reruns repeat."""
        return torch.Generator().manual_seed(self.cfg.seed * 1000 + salt)

    @functools.cached_property
    def controls(self) -> list[Transformer]:
        """The same architecture at random initialization, CONTROL_SEEDS times (seeds cfg.seed,
        cfg.seed + 1, ...), in eval mode: one random model is one draw, and a trained model should
        stand out from the spread of several."""
        models = []
        for i in range(CONTROL_SEEDS):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed + i)
                models.append(build_model(self.model_name, ModelConfig(**self.model_args)))
        return [model.to(self.device).eval() for model in models]

    @property
    def control(self) -> Transformer:
        """The first random-init control, for figures and descriptive numbers."""
        return self.controls[0]

    # --- validation text ---------------------------------------------------------------------
    @property
    def val_path(self) -> Path:
        return Path(self.cfg.data_dir) / self.cfg.dataset / "val.bin"

    @functools.cached_property
    def all_val_tokens(self) -> np.ndarray:
        path = self.val_path
        if not path.is_file():
            raise UserError(f"no validation text at {path}; prepare it with: "
                            f"python data/{self.cfg.dataset}/prepare.py")
        tokens = np.fromfile(path, dtype=np.uint16)
        if len(tokens) < 2:
            raise UserError(f"{path} holds {len(tokens)} tokens; prepare it again with: "
                            f"python data/{self.cfg.dataset}/prepare.py")
        if tokens.max() >= self.vocab_size:
            raise UserError(f"{path} holds token id {tokens.max()}, outside this model's vocabulary of "
                            f"{self.vocab_size}; it was prepared for another model")
        return tokens

    def text_windows(self, max_windows: int | None = None) -> torch.Tensor:
        """The first cfg.audit_tokens validation tokens as (N, T) windows, T = the model's block size
        (fewer tokens than one window gives one shorter window)."""
        tokens = self.all_val_tokens[: self.cfg.audit_tokens].astype(np.int64)
        T = min(self.model.config.block_size, len(tokens))
        n = len(tokens) // T
        if max_windows is not None:
            n = min(n, max_windows)
        return torch.from_numpy(tokens[: n * T].reshape(n, T)).to(self.device)

    @functools.cached_property
    def frequent_tokens(self) -> torch.Tensor:
        """The cfg.audit_vocab most frequent token ids in the training text (train.bin beside val.bin;
        the validation text where there is none), most frequent first. Experiments search this
        vocabulary, not all 50k ids: tokens training rarely showed keep rows that are noise, or that
        all moved alike, and would crowd every neighbour list."""
        train = self.val_path.with_name("train.bin")
        text = np.memmap(train, dtype=np.uint16, mode="r") if train.is_file() else self.all_val_tokens
        counts = np.bincount(text, minlength=GPT2_VOCAB_SIZE)[: min(GPT2_VOCAB_SIZE, self.vocab_size)]
        order = np.argsort(-counts, kind="stable")
        order = order[counts[order] > 0][: self.cfg.audit_vocab]
        return torch.from_numpy(order.astype(np.int64))

    def vocabulary_with(self, extra: list[int]) -> torch.Tensor:
        """The frequent tokens plus `extra` ids (probe words, targets), without repeats."""
        ids = self.frequent_tokens.tolist()
        seen = set(ids)
        return torch.tensor(ids + [i for i in dict.fromkeys(extra) if i not in seen])


def reports_dir_for(cfg: Config, ckpt: str | None) -> Path:
    """Reports live beside the checkpoint they describe: out_dir/audit_reports, or, with --ckpt,
    in the checkpoint's own run directory."""
    run_dir = checkpoint_path(ckpt).parent if ckpt else Path(cfg.out_dir)
    return run_dir / REPORTS_DIR_NAME


def load_context(cfg: Config, ckpt: str | None = None) -> Context:
    """Load the checkpoint named by --ckpt (or the config's out_dir) into a Context."""
    path = ckpt if ckpt else cfg.out_dir
    checkpoint = load_checkpoint(path)
    name = model_name_of(checkpoint)
    if name != cfg.model:
        raise UserError(f"the checkpoint at {checkpoint_path(path)} is a {name} model but the config "
                        f"describes a {cfg.model}; pass the config it was trained with")
    model = model_from_checkpoint(checkpoint)
    device = resolve_device(cfg.device)
    # Analysis in fp32 whatever the training dtype: ranks and tiny probabilities must be exact.
    model = model.to(device=device, dtype=torch.float32).eval()
    reports_dir = reports_dir_for(cfg, ckpt)
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {reports_dir} ({error.strerror}); pass a writable --out_dir")
    if not os.access(reports_dir, os.W_OK):
        raise UserError(f"cannot write to {reports_dir}; pass a writable --out_dir")
    return Context(
        model=model, cfg=cfg, model_name=name,
        model_args={k: v for k, v in checkpoint["model_args"].items() if k != "model"},  # ModelConfig's
        checkpoint=str(checkpoint_path(path)), iter_num=checkpoint.get("iter_num"),
        reports_dir=reports_dir, wandb_run_id=checkpoint.get("wandb_run_id"),
    )
