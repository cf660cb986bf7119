"""What every experiment is handed: the trained model, its random-init control, the config, and text.

Random init (the same architecture, built from the checkpoint's model_args with fixed seeds) is a
floor, shown beside the numbers and never judged on its few draws. Verdicts come from nulls that can
fail (experiments/nulls.py, experiments/statistics.py) and, when given, the trained reference.

Two additions for comparisons (issue 13):
  - `cfg.posthoc` ('svd' or 'dictionary') gives gpt2 / gpt2-new a post-hoc factorization of the
    embedding; `ctx.in_signal_space()` is then the context the recipe experiments see, whose model
    and controls answer `effective_recipe`, `basis` and `signal_activations` from it
    (experiments/posthoc.py). `ctx.factorization` says which factorization that is.
  - `experiment.py CONFIG --reference RUN` loads a trained reference model as `ctx.reference`
    (with its own post-hoc factorization when it has no recipes), for experiments to measure too.

And for distillation (issue 23): `ctx.teacher`, the run named by distill_from or teacher_run
(experiments/teacher.py), loaded when experiment 16 first asks for it.
"""

import copy
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    load_checkpoint_of,
    model_from_checkpoint,
    model_name_of,
    tokenizer_of,
)
from core.config import Config
from core.errors import UserError
from core.hardware import resolve_device
from core.i18n import N_
from core.memory_plan import check_sampling_fits
from core.tokenizer import GPT2_VOCAB_SIZE, Tokenizer, encode
from experiments.common import SAMPLES_PER_PROMPT, prompt_ids
from experiments.posthoc import Factorization, FactorizedModel, factorize
from experiments.teacher import Teacher, load_teacher
from models import MODELS, ModelConfig, Transformer, build_model

REPORTS_DIR_NAME = "audit_reports"
# Experiments that read tokens in recipe space where a model has it (1, 4, 5) besides the five that
# need recipes: with a post-hoc factorization they read its recipes too.
RECIPE_SPACE_EXPERIMENTS = (1, 4, 5)
# Keys holding words whose recipes the experiments read (a dictionary factorization codes these rows).
WORD_KEYS = ("probe_words", "word_groups", "analogies", "target_prompts", "positive_words", "negative_words",
             "concept_words")


@dataclass
class Reference:
    """A trained model to compare with (--reference RUN): e.g. gpt2-new trained like the audited model."""

    model: Transformer
    model_name: str
    checkpoint: str
    iter_num: int | None
    factorization: Factorization | None  # native recipes, a post-hoc one, or None

    @property
    def signal_model(self):
        """The model the recipe experiments read: itself, or its post-hoc view (None: no signals)."""
        if self.factorization is None:
            return None
        return self.model if self.model.has_recipes else FactorizedModel(self.model, self.factorization)


CONTROL_SEEDS = 3  # random-init models kept in memory (figures, the costlier floors)
FLOOR_DRAWS = 20  # random-init draws of the floors that run the model (6, 7, 8); table-only: cfg.floor_draws


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
    reference: Reference | None = None
    # The model's ids <-> GPT-2's: every word, prompt and token file goes through it (vocab='corpus'
    # remaps them). None: GPT-2's own ids, as a checkpoint without a remapped vocabulary has.
    tokenizer: Tokenizer | None = None

    def __post_init__(self):
        if self.tokenizer is None:
            self.tokenizer = Tokenizer(self.model.config.vocab_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt(self, text: str, key: str) -> torch.Tensor:
        """A config prompt as a (1, T) batch on the model's device."""
        return prompt_ids(text, self.model.config.block_size, self.tokenizer, key).to(self.device)

    def generator(self, salt: int) -> torch.Generator:
        """A generator seeded from the config's seed and a per-experiment salt: reruns repeat."""
        return torch.Generator().manual_seed(self.cfg.seed * 1000 + salt)

    @functools.cached_property
    def controls(self) -> list[Transformer]:
        """The same architecture at random initialization, CONTROL_SEEDS times (seeds cfg.seed,
        cfg.seed + 1, ...), in eval mode: one random model is one draw, and a trained model should
        stand out from the spread of several."""
        return [self.random_init(i) for i in range(CONTROL_SEEDS)]

    def random_init(self, draw: int) -> Transformer:
        """Random-init draw number `draw` (seed cfg.seed + draw) of this architecture, in eval mode."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed + draw)
            model = build_model(self.model_name, ModelConfig(**self.model_args))
        return model.to(self.device).eval()

    def table_floor(self):
        """The random-init floor of the experiments that read only the token table: cfg.floor_draws draws."""
        return self.floor_models(self.cfg.floor_draws)

    def floor_models(self, count: int = FLOOR_DRAWS):
        """The random-init floor as `count` draws, yielded one at a time (the first CONTROL_SEEDS are
        self.controls, the rest built and dropped in turn: never all in memory). In the signal-space
        view each draw is seen through its own post-hoc factorization, as the controls are."""
        yield from self.controls[:count]
        for draw in range(len(self.controls), count):
            model = self.random_init(draw)
            yield FactorizedModel(model, self.factorize(model)) if isinstance(self.model, FactorizedModel) \
                else model

    @functools.cached_property
    def teacher(self) -> Teacher:
        """The teacher experiment 16 compares with (distill_from, else teacher_run), checked against
        this model; a UserError when none is named or it cannot be compared."""
        return load_teacher(self.cfg, self.model, self.model_name, self.tokenizer, self.checkpoint,
                            self.device)

    @property
    def control(self) -> Transformer:
        """The first random-init control, for figures and descriptive numbers."""
        return self.controls[0]

    # --- signal space: native recipes or a post-hoc factorization (issue 13) -----------------
    @property
    def has_signals(self) -> bool:
        """Whether the recipe experiments can run: native recipes, or cfg.posthoc names a factorization."""
        return self.model.has_recipes or self.cfg.posthoc != "none"

    def factorize(self, model: Transformer) -> Factorization | None:
        """`model`'s native recipes, or the cfg.posthoc factorization of its embedding (seeded by cfg.seed;
        a dictionary codes only the rows the experiments read, see posthoc.dictionary_factorization)."""
        rows = self.read_rows() if self.cfg.posthoc == "dictionary" and not model.has_recipes else None
        return factorize(model, self.cfg.posthoc, self.model_args.get("n_signals", model.config.n_embd),
                         self.cfg.posthoc_active_fraction, self.cfg.seed, rows)

    @functools.cached_property
    def factorization(self) -> Factorization | None:
        return self.factorize(self.model)

    def in_signal_space(self) -> "Context":
        """The context the recipe experiments see: this one for a model with recipes (or no
        factorization); for gpt2 / gpt2-new with cfg.posthoc, a copy whose model and random-init
        controls are each seen through their own post-hoc factorization."""
        if self.model.has_recipes or self.cfg.posthoc == "none":
            return self
        if "_signal_view" not in self.__dict__:
            self.factorization  # noqa: B018  (computed on the model itself, before the copy shares it)
            view = copy.copy(self)  # shares the cached text, vocabulary, factorization and reference
            view.model = FactorizedModel(self.model, self.factorization)
            view.__dict__["controls"] = [FactorizedModel(c, self.factorize(c)) for c in self.controls]
            self.__dict__["_signal_view"] = view
        return self.__dict__["_signal_view"]

    def read_rows(self) -> torch.Tensor | None:
        """The token rows the experiments read: the frequent vocabulary and every token of the
        validation text they run on (when the text is there: causal ablation reads the recipe of each
        true next token), and every single-token word of the config's word lists."""
        words = []
        for key in WORD_KEYS:
            value = getattr(self.cfg, key)
            items = value.values() if isinstance(value, dict) else value
            for item in items:
                words += item if isinstance(item, (list, tuple)) else [item]
        first = [encode(w)[:1] for w in words if isinstance(w, str)]
        ids = [i for i in self.tokenizer.model_id_of[sum(first, [])].tolist() if i >= 0]  # the model has it
        try:
            text = np.unique(self.audit_text).tolist()
            return self.vocabulary_with(ids + text)
        except UserError:  # no text to rank the vocabulary by: the words alone
            return torch.tensor(sorted(set(ids))) if ids else None

    # --- validation text ---------------------------------------------------------------------
    @property
    def val_path(self) -> Path:
        return Path(self.cfg.data_dir) / self.cfg.dataset / "val.bin"

    @functools.cached_property
    def all_val_tokens(self) -> np.ndarray:
        """The validation text as the model's ids (val.bin holds GPT-2's)."""
        path = self.val_path
        if not path.is_file():
            raise UserError(f"no validation text at {path}; prepare it with: "
                            f"python data/{self.cfg.dataset}/prepare.py")
        tokens = np.fromfile(path, dtype=np.uint16)
        if len(tokens) < 2:
            raise UserError(f"{path} holds {len(tokens)} tokens; prepare it again with: "
                            f"python data/{self.cfg.dataset}/prepare.py")
        return self.tokenizer.from_gpt2(tokens, str(path), fix=N_("it was prepared for another model"))

    @property
    def audit_text(self) -> np.ndarray:
        """The validation text the experiments run on: its first cfg.audit_tokens tokens."""
        return self.all_val_tokens[: self.cfg.audit_tokens]

    def text_windows(self, max_windows: int | None = None) -> torch.Tensor:
        """The first cfg.audit_tokens validation tokens as (N, T) windows, T = the model's block size
        (fewer tokens than one window gives one shorter window)."""
        tokens = self.audit_text.astype(np.int64)
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
        if train.is_file():  # GPT-2 ids, counted, then read at the model's ids
            gpt2_counts = np.bincount(np.memmap(train, dtype=np.uint16, mode="r"), minlength=GPT2_VOCAB_SIZE)
            counts = gpt2_counts[self.tokenizer.gpt2_ids]
        else:  # already the model's ids
            n_vocab = self.tokenizer.n_vocab
            counts = np.bincount(self.all_val_tokens, minlength=n_vocab)[:n_vocab]
        order = np.argsort(-counts, kind="stable")
        order = order[counts[order] > 0][: self.cfg.audit_vocab]
        return torch.from_numpy(order.astype(np.int64))

    def vocabulary_with(self, extra: list[int]) -> torch.Tensor:
        """The frequent tokens plus `extra` ids (probe words, targets), without repeats."""
        ids = self.frequent_tokens.tolist()
        seen = set(ids)
        return torch.tensor(ids + [i for i in dict.fromkeys(extra) if i not in seen])


def reports_dir_name(cfg: Config) -> str:
    """audit_reports, or audit_reports_posthoc_<method> for gpt2 / gpt2-new read through a post-hoc
    factorization, so the reports of both readings of one checkpoint live side by side; a single
    sae_reading (a study arm of experiment 15) adds _reading_<reading>, e.g. _reading_sae512."""
    name = REPORTS_DIR_NAME
    if cfg.posthoc != "none" and not MODELS[cfg.model].has_recipes:
        name += f"_posthoc_{cfg.posthoc}"
    if cfg.sae_reading != "all":
        name += f"_reading_{cfg.sae_reading}" + (str(cfg.sae_widths[0]) if cfg.sae_reading == "sae" else "")
    return name


def reports_dir_for(cfg: Config, ckpt: str | None) -> Path:
    """Reports live beside the checkpoint they describe: out_dir/audit_reports, or, with --ckpt,
    in the checkpoint's own run directory."""
    run_dir = checkpoint_path(ckpt).parent if ckpt else Path(cfg.out_dir)
    return run_dir / reports_dir_name(cfg)


def load_reference(cfg: Config, run: str, device: str, tokenizer: Tokenizer,
                   rows: torch.Tensor | None = None) -> Reference:
    """A trained reference model from a run directory or checkpoint file, in fp32 eval mode, with its
    factorization: native recipes, else cfg.posthoc's, else SVD (a reference is for comparing)."""
    checkpoint = load_checkpoint(run)
    theirs = tokenizer_of(checkpoint)
    if (theirs.remapped or tokenizer.remapped) and theirs.gpt2_ids.tolist() != tokenizer.gpt2_ids.tolist():
        raise UserError(f"the reference {checkpoint_path(run)} has another vocabulary than the audited model "
                        "(vocab='gpt2' vs 'corpus', or another corpus): its token ids mean other tokens; "
                        "compare models trained with the same vocab and data")
    model = model_from_checkpoint(checkpoint).to(device=device, dtype=torch.float32).eval()
    method = cfg.posthoc if cfg.posthoc != "none" else "svd"
    S = checkpoint["model_args"].get("n_signals", model.config.n_embd)
    factorization = factorize(model, method, S, cfg.posthoc_active_fraction, cfg.seed, rows)
    return Reference(model, model_name_of(checkpoint), str(checkpoint_path(run)), checkpoint.get("iter_num"),
                     factorization)


def load_context(cfg: Config, ckpt: str | None = None, reference: str | None = None) -> Context:
    """Load the checkpoint named by --ckpt (or the config's out_dir) into a Context, and the trained
    reference named by --reference, if any."""
    checkpoint, name, file = load_checkpoint_of(cfg, ckpt)
    model = model_from_checkpoint(checkpoint)
    device = resolve_device(cfg.device)
    check_sampling_fits(model, SAMPLES_PER_PROMPT, cfg.audit_sample_tokens, device, "float32",
                        keys="audit_sample_tokens")
    # Analysis in fp32 whatever the training dtype: ranks and tiny probabilities must be exact.
    model = model.to(device=device, dtype=torch.float32).eval()
    reports_dir = reports_dir_for(cfg, ckpt)
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {reports_dir} ({error.strerror}); pass a writable --out_dir")
    if not os.access(reports_dir, os.W_OK):
        raise UserError(f"cannot write to {reports_dir}; pass a writable --out_dir")
    ctx = Context(
        model=model, cfg=cfg, model_name=name,
        model_args={k: v for k, v in checkpoint["model_args"].items() if k != "model"},  # ModelConfig's
        checkpoint=str(file), iter_num=checkpoint.get("iter_num"),
        reports_dir=reports_dir, wandb_run_id=checkpoint.get("wandb_run_id"),
        tokenizer=tokenizer_of(checkpoint),
    )
    if reference:
        ctx.reference = load_reference(cfg, reference, device, ctx.tokenizer, ctx.read_rows())
    return ctx
