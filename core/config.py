"""Configuration: plain-Python config files plus `--key=value` overrides, checked against one schema.

Like nanoGPT, a config file is Python assignments (`n_layer = 6`) and runs as code, so only run
config files you trust; unlike nanoGPT, the result is a dataclass instance (importable, testable).

Every script reads the same `Config`, so one file can hold training, sampling and experiment keys.
Each key is declared once, in `Config` below or, for the architecture, on `ModelConfig`
(models/layers.py), whose fields Config takes over: with its type, its limits or choices
(`checked(default, ge=...)`, `Literal[...]`) and a trailing comment that is its `--help` line.
`load_config` refuses, in one line naming the key, the value and what is allowed, an unknown key,
a wrong type, a value out of its limits, and keys that do not fit together, before a script does
any work. `--help` on any script's command line prints every key by group.
"""

import ast
import dataclasses
import difflib
import inspect
import io
import operator
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import UserError
from core.hardware import DEVICE_FORMS, DEVICE_PATTERN, DTYPES, device_unavailable
from core.i18n import LANGUAGE_CHOICES
from models import MODELS, ModelConfig
from models.layers import checked

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_DIR = REPO_ROOT / "out"
POSTHOC_CHOICES = ("none", "svd", "dictionary")  # see experiments/posthoc.py
SHARD_MODES = ("none", "optimizer", "full")  # see training/sharding.py
VOCAB_CHOICES = ("gpt2", "corpus")  # see docs/vocab.md
DEFAULT_VOCAB_SIZE = ModelConfig().vocab_size
SAE_READINGS = ("all", "native", "svd", "sae")  # see experiments/sae_comparison.py


def with_model_keys(cls):
    """Insert every field of ModelConfig (models/layers.py) into `cls` right after its `model` key,
    with its default and declared limits: an architecture key is declared once, on ModelConfig,
    and is a config key like any other."""
    own = cls.__dict__["__annotations__"]
    model_hints = typing.get_type_hints(ModelConfig)
    annotations = {}
    for name, kind in own.items():
        annotations[name] = kind
        if name == "model":
            for f in dataclasses.fields(ModelConfig):
                annotations[f.name] = model_hints[f.name]
                setattr(cls, f.name, field(default=f.default, default_factory=f.default_factory,
                                           metadata=f.metadata))
    cls.__annotations__ = annotations
    return cls


@dataclass
@with_model_keys
class Config:
    """Every key of every script, grouped by concern; `python train.py --help` lists them.

    Each key's trailing comment is its help line, and its limits (`checked(default, ge=...)`) or
    choices (`Literal[...]`) are enforced by load_config before any script does work.
    """

    # --- I/O --------------------------------------------------------------------------------
    out_dir: str = checked("out/default", nonempty=True)  # run directory: ckpt.pt, audit_reports/
    init_from: str = checked("scratch", nonempty=True)  # 'scratch', 'resume', or a checkpoint / run dir
    eval_interval: int = checked(2000, ge=1)  # steps between evaluations (each may save ckpt.pt)
    eval_iters: int = checked(200, ge=1)  # batches per split in one evaluation
    eval_only: bool = False  # evaluate once, save nothing, exit
    always_save_checkpoint: bool = True  # save at every evaluation; False: only when val loss improves
    log_interval: int = checked(1, ge=1)  # steps between log lines
    wandb_log: bool = False  # also log to Weights & Biases
    wandb_project: str = "reflow"  # wandb project name
    wandb_run_name: str = "run"  # wandb run name
    lang: Literal[LANGUAGE_CHOICES] = "auto"  # 'en', 'zh', or 'auto' (the locale): menus, reports, figures
    # --- data -------------------------------------------------------------------------------
    data_dir: str = checked("data", nonempty=True)  # datasets live in data_dir/<dataset>/
    dataset: str = checked("openwebtext", nonempty=True)  # folder with train.bin, val.bin (+ *_mask.bin)
    batch_size: int = checked(12, ge=1)  # sequences per micro-batch
    gradient_accumulation_steps: int = checked(40, ge=1)  # micro-batches per global batch, over all ranks
    # 'corpus' keeps GPT-2's tokenizer but gives the model rows only for the GPT-2 ids the dataset holds
    # (train.bin, val.bin and <|endoftext|>), renumbered densely: docs/vocab.md.
    vocab: Literal[VOCAB_CHOICES] = "gpt2"  # 'gpt2': all 50257 ids; 'corpus': only those train/val hold
    # --- model (`model`, then every field of ModelConfig in models/layers.py) --------------
    model: Literal[tuple(MODELS)] = "reflow"  # the architecture (models/__init__.py)
    # --- optimization -----------------------------------------------------------------------
    learning_rate: float = checked(6e-4, gt=0)  # peak learning rate, reached after warmup
    max_iters: int = checked(600000, ge=0)  # optimizer steps of the whole run
    weight_decay: float = checked(1e-1, ge=0)  # AdamW weight decay (matrices only)
    beta1: float = checked(0.9, ge=0, lt=1)  # AdamW first-moment decay
    beta2: float = checked(0.95, ge=0, lt=1)  # AdamW second-moment decay
    grad_clip: float = checked(1.0, ge=0)  # clip the gradient norm to this; 0 disables clipping
    decay_lr: bool = True  # warmup then cosine decay; False keeps learning_rate constant
    warmup_iters: int = checked(2000, ge=0)  # steps of linear warmup
    lr_decay_iters: int = checked(600000, ge=0)  # step where the cosine reaches min_lr
    min_lr: float = checked(6e-5, ge=0)  # learning rate at the end of the decay
    on_nonfinite: Literal["stop", "skip"] = "stop"  # a NaN/inf loss: 'stop' the run, or 'skip' the step
    # --- system -----------------------------------------------------------------------------
    device: str = checked("auto", pattern=DEVICE_PATTERN, means=DEVICE_FORMS)  # auto: cuda, else mps, or cpu
    dtype: Literal[("auto", *DTYPES)] = "auto"  # auto: bfloat16 if the GPU has it, else float16; CPU: float32
    backend: Literal["nccl", "gloo", "mpi", "ucc"] = "nccl"  # DDP backend on GPUs; CPU runs always use gloo
    compile: bool = False  # torch.compile the model
    memory_check: bool = True  # CUDA: refuse a run whose memory plan exceeds the GPU; False runs anyway
    seed: int = checked(1337, ge=0, lt=2**63)  # every random draw is a function of (seed, step)
    # --- sampling (sample.py, and train.py's closing sample) --------------------------------
    start: str = "\n"  # prompt, or FILE:path to read it from a file
    num_samples: int = checked(3, ge=1)  # samples per prompt, drawn as one batch
    max_new_tokens: int = checked(200, ge=0)  # tokens per sample; 0 skips train.py's closing sample
    temperature: float = checked(0.8, ge=0)  # softmax temperature; 0 is greedy
    top_k: int | None = checked(200, ge=1)  # draw among the k likeliest tokens; None: all
    chat: bool = False  # chat mode: prompts are wrapped in the chat template (core/chat.py)
    use_cache: bool = True  # key/value cache; False recomputes the whole context each step
    # --- experiments (experiment.py) --------------------------------------------------------
    # Every word must be one GPT-2 token; most take a leading space (" king", not "king").
    probe_words: list = field(default_factory=lambda: [" king", " queen", " man", " woman"])  # words to probe
    word_groups: dict = field(default_factory=lambda: {  # labelled groups: galaxy, atlas
        "royalty": [" king", " queen", " prince", " princess", " lord", " lady"],
        "countries": [" France", " China", " England", " Germany", " Japan", " Italy"],
        "cities": [" Paris", " Beijing", " London", " Rome", " Tokyo", " Berlin"],
        "numbers": [" one", " two", " three", " four", " five", " six"],
        "colors": [" red", " blue", " green", " white", " black", " yellow"],
        "animals": [" dog", " cat", " horse", " bird", " fish", " cow"],
    })
    analogies: list = field(default_factory=lambda: [  # [a, b, c, d]: a - b + c should be d
        [" king", " man", " woman", " queen"],
        [" walked", " walking", " running", " ran"],
        [" Paris", " France", " China", " Beijing"],
    ])
    typo_sentences: list = field(default_factory=lambda: [  # [correct, misspelled, unrelated], same ending
        ["The capital of France is", "The capitol of Frnace is", "The color of grass is"],
        ["I love this beautiful house", "I lvoe this beutiful house", "He sold that large house"],
    ])
    target_prompts: list = field(default_factory=lambda: [  # [prompt, target]: lens, flow, ablation
        ["The capital of France is", " Paris"],
    ])
    positive_words: list = field(default_factory=lambda: [  # one pole of the sentiment axis: steering
        " good", " great", " happy", " love", " wonderful", " beautiful", " excellent", " best"])
    negative_words: list = field(default_factory=lambda: [  # the other pole
        " bad", " terrible", " sad", " hate", " awful", " ugly", " horrible", " worst"])
    steer_prompts: list = field(default_factory=lambda: [  # prompts the steering experiments continue
        "I think that", "The movie was", "Today I feel"])
    steer_alpha: float = checked(0.15, ge=0)  # steering strength, in units of the residual stream's mean norm
    concept_words: list = field(default_factory=lambda: [" Paris", " love"])  # Concept Inception targets
    concept_prompt: str = checked("I went to the", nonempty=True)  # Concept Inception continues this
    concept_alpha_max: float = checked(16.0, gt=0)  # Concept Inception searches alpha in [0, this]
    hijack_strength: float = checked(1.0, ge=0, le=1)  # Genetic Hijack: 0 keeps recipes, 1 replaces them
    # With n draws the smallest empirical p is 1 / (n + 1): at 20 it cannot survive Holm next to a smaller
    # p, at 200 it can. Each draw builds a model (and, read post hoc, factorizes it).
    floor_draws: int = checked(200, ge=1)  # random-init draws, token-table floors of experiments 1, 2, 4, 5
    audit_tokens: int = checked(16384, ge=1)  # validation tokens read by the experiments that need text
    audit_vocab: int = checked(2000, ge=1)  # word searches run over this many most frequent training tokens
    audit_sample_tokens: int = checked(32, ge=1)  # length of each generated sample in the reports

    # --- regularizers (issue 15): all off at 0; definitions in training/regularizers.py ------
    recipe_l1: float = checked(0.0, ge=0)  # recipe sparsity: mean ||r||_1 / (sqrt(S) ||r||_2); reflow family
    repulsion: float = checked(0.0, ge=0)  # STT repulsion: mean squared cosine between positions' states
    head_diversity: float = checked(0.0, ge=0)  # STT head diversity: mean cosine between heads' patterns
    regularize_layers: list = field(default_factory=list)  # layers repulsion/head_diversity read; [] = all

    # --- scale (issue 17) -------------------------------------------------------------------
    shard: Literal[SHARD_MODES] = "none"  # 'optimizer' (ZeRO-1) or 'full' (FSDP2); see training/sharding.py
    collective_timeout_s: float = checked(600.0, gt=0)  # a rank waiting this long on the others stops
    # --- studies and post-hoc baselines (issue 13) ----------------------------------------------
    # gpt2 / gpt2-new have no recipes; the recipe experiments can read a factorization of their
    # embedding cut after training instead (experiments/posthoc.py): one of POSTHOC_CHOICES.
    posthoc: Literal[POSTHOC_CHOICES] = "none"  # a post-hoc factorization for the recipe experiments
    posthoc_active_fraction: float = checked(0.11, gt=0, le=1)  # dictionary: nonzeros per recipe / S
    # --- distillation (issue 23): definitions in training/distillation.py -------------------
    distill_from: str = ""  # teacher run dir or checkpoint whose logits the student learns; '' = none
    distill_temperature: float = checked(2.0, gt=0)  # T: the KL compares softmax(logits / T)
    distill_weight: float = checked(0.5, ge=0, le=1)  # objective: (1 - w) * LM loss + w * T^2 * KL
    init_basis_from: str = ""  # start W_basis from this run's (same S and C); reflow family
    init_recipes_from: str = ""  # start W_recipe from this run's (same V and S); reflow family
    rotate_basis_seed: int | None = checked(None, ge=0)  # control: init_basis_from's basis, randomly rotated
    freeze_basis: bool = False  # W_basis is not trained; reflow family
    freeze_recipes: bool = False  # W_recipe is not trained; reflow family
    # Experiment 16's teacher for a model trained without distill_from (the scratch and teacher arms of
    # studies/distillation.py): read by the experiments only, never by training.
    teacher_run: str = ""  # run dir or checkpoint experiment 16 compares with; distill_from wins
    # --- native signals vs sparse autoencoders (issue 23): experiments/sae_comparison.py ----
    sae_widths: list = field(default_factory=lambda: [128, 512, 2048])  # latents of each SAE, one per layer
    sae_k: int = checked(14, ge=1)  # latents an SAE keeps per token; every reading is cut to this L0
    sae_steps: int = checked(300, ge=1)  # training steps of each SAE (batches of 256 activations)
    sae_train_tokens: int = checked(32768, ge=256)  # train.bin tokens whose activations train the SAEs
    sae_reading: Literal[SAE_READINGS] = "all"  # one reading only (a study arm): native, svd, sae (1 width)

    def model_config(self) -> ModelConfig:
        """The architecture part of this config."""
        names = {f.name for f in dataclasses.fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_args(argv: list[str]) -> tuple[str | None, dict[str, str]]:
    """Split `[CONFIG_FILE] [--key=value ...]` into the file (or None) and raw override strings;
    `--help` (or -h) prints the script's docstring and every key, and exits."""
    if "--help" in argv or "-h" in argv:
        script = sys.modules["__main__"].__doc__ or ""
        print(f"{script.strip()}\n\n{describe_keys()}")
        raise SystemExit(0)
    config_file, overrides = None, {}
    for arg in argv:
        if arg.startswith("--"):
            key, sep, value = arg[2:].partition("=")
            if not sep:
                raise UserError(f"override {arg!r} needs a value: write --{key}=VALUE")
            overrides[key] = value
        elif config_file is None:
            config_file = arg
        else:
            raise UserError(f"unexpected argument {arg!r}: give one config file, then --key=value")
    return config_file, overrides


def load_config(config_file: str | None = None, overrides: dict[str, str] | None = None) -> Config:
    """Defaults, then the config file's assignments, then the overrides; each key checked for its
    type, then every value for its declared limits and the keys against each other (`validate`)."""
    values = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    hints = typing.get_type_hints(Config)
    for key, value in values.items():
        check_key(key, hints, source=config_file)
        values[key] = check_type(key, value, hints[key], source=config_file)
    for key, raw in (overrides or {}).items():
        check_key(key, hints, source="the command line")
        values[key] = check_type(key, parse_value(raw), hints[key], source="the command line")
    config = Config(**values)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Every key within its declared limits, then the keys against each other and this machine, so
    that a bad value fails here, before any work, not deep inside a model or at the end of a run."""
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        value = getattr(config, f.name)
        if not fits(value, hints[f.name], f.metadata):
            raise UserError(f"{f.name} must be {allowed(hints[f.name], f.metadata)}, got {value!r}")
    check_architecture(config)
    check_sae_keys(config)
    check_run_keys(config)


def check_architecture(config: Config) -> None:
    """The model keys fit together: heads divide the width, the head size suits the positions, the
    vocabulary's size is the corpus's when vocab='corpus'."""
    if config.n_embd % config.n_head:
        raise UserError(f"n_embd ({config.n_embd}) must be a multiple of n_head ({config.n_head})")
    kv = config.n_kv_head or config.n_head
    if config.n_head % kv:
        raise UserError(f"n_head ({config.n_head}) must be a multiple of n_kv_head ({kv})")
    if config.model == "reflow-lite" and kv >= config.n_head:
        raise UserError(f"reflow-lite needs n_kv_head < n_head ({config.n_head}); e.g. --n_kv_head=4")
    if config.model == "reflow-topk" and config.topk > config.n_signals:
        raise UserError(f"topk ({config.topk}) must be between 1 and n_signals ({config.n_signals})")
    if config.vocab == "corpus" and config.vocab_size != DEFAULT_VOCAB_SIZE:
        raise UserError(f"vocab='corpus' sets vocab_size from the corpus (its token count, padded to a "
                        f"multiple of 64); leave vocab_size unset, got {config.vocab_size}")
    head_size = config.n_embd // config.n_head
    if MODELS[config.model].uses_rope and head_size % 2:
        raise UserError(f"n_embd / n_head (the head size) must be even: {config.model} rotates positions "
                        f"in pairs of dimensions; got {config.n_embd} / {config.n_head} = {head_size}")


def check_sae_keys(config: Config) -> None:
    """The SAE widths are whole numbers of at least sae_k latents; one reading of SAEs names one width."""
    widths = config.sae_widths
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w >= config.sae_k
                             for w in widths):
        raise UserError(f"sae_widths must be a non-empty list of integers of at least sae_k "
                        f"({config.sae_k}), got {widths!r}")
    if config.sae_reading == "sae" and len(widths) != 1:
        raise UserError(f"sae_reading='sae' compares one SAE: give one width, e.g. --sae_widths=[512], "
                        f"got {widths!r}")


def check_run_keys(config: Config) -> None:
    """init_from, the schedule and the device make sense, on this machine."""
    init = config.init_from  # a word that is neither mode nor path is a misspelt mode ('resum')
    looks_like_a_path = "/" in init or init.endswith(".pt") or Path(init).exists()
    if init not in ("scratch", "resume") and not looks_like_a_path:
        raise UserError(f"init_from must be 'scratch', 'resume', or a checkpoint file or run directory, "
                        f"got {init!r} (no such path)")
    if config.decay_lr and config.min_lr > config.learning_rate:
        raise UserError(f"min_lr ({config.min_lr}) must not exceed learning_rate ({config.learning_rate}); "
                        "the schedule decays from one to the other")
    if config.rotate_basis_seed is not None and not config.init_basis_from:
        raise UserError("rotate_basis_seed rotates the basis init_basis_from copies; set "
                        "--init_basis_from=RUN or drop it")
    if config.distill_from and config.chunked_loss:
        raise UserError("distill_from needs the student's logits, which chunked_loss never forms; "
                        "set --chunked_loss=False")
    unusable = device_unavailable(config.device)
    if unusable:
        raise UserError(f"device must be one this machine has ({unusable}), got {config.device!r}; "
                        "use --device=cpu or --device=auto")


BOUNDS = {"ge": (operator.ge, "at least"), "gt": (operator.gt, "greater than"),
          "le": (operator.le, "at most"), "lt": (operator.lt, "below")}


def fits(value, kind, rules: Mapping) -> bool:
    """Whether a value (of the right type: check_type saw to that) is among a key's choices
    (Literal) and within its declared rules (see models.layers.checked)."""
    if value is None:  # allowed exactly when the annotation says `| None`
        return True
    choices = choices_of(kind)
    if choices is not None:
        return value in choices
    if rules.get("nonempty") and value == "":
        return False
    if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
        return False
    return all(test(value, rules[name]) for name, (test, _) in BOUNDS.items() if name in rules)


def allowed(kind, rules: Mapping) -> str:
    """What a key allows, in words ('' when any value of its type will do)."""
    choices = choices_of(kind)
    if choices is not None:
        words = " or ".join(filter(None, [", ".join(map(repr, choices[:-1])), repr(choices[-1])]))
    elif rules.get("nonempty"):
        words = "a non-empty string"
    elif "pattern" in rules:
        words = rules["means"]
    else:
        words = " and ".join(f"{text} {readable(rules[name])}" for name, (_, text) in BOUNDS.items()
                             if name in rules)
    if words and type(None) in union_members(kind):
        words += " or None"
    return words


def readable(bound) -> str:
    """2**63 rather than its 19 digits."""
    if isinstance(bound, int) and bound > 2**20 and bound & (bound - 1) == 0:
        return f"2**{bound.bit_length() - 1}"
    return str(bound)


def choices_of(kind) -> tuple | None:
    return next((typing.get_args(k) for k in union_members(kind) if typing.get_origin(k) is Literal), None)


def union_members(kind) -> tuple:
    is_union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    return typing.get_args(kind) if is_union else (kind,)


def from_dict(values: dict) -> Config:
    """A config from a saved dict (a checkpoint's `config`), ignoring keys this version dropped."""
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in values.items() if k in names})


def keys_by_group() -> dict[str, list[tuple[str, str, str, str]]]:
    """{group: [(key, default, allowed, comment)]}, in the order Config declares them: the groups
    are its `# --- group ---` headers and the comments are the keys' trailing comments, read from
    the source, so the code stays the one place where a key is documented."""
    comments = {**trailing_comments(ModelConfig), **trailing_comments(Config)}
    groups = headers(Config)
    hints = typing.get_type_hints(Config)
    listing: dict[str, list] = {}
    group = ""
    for f in dataclasses.fields(Config):
        group = groups.get(f.name, group)  # ModelConfig's keys follow `model`, in its group
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        listing.setdefault(group, []).append(
            (f.name, repr(default), allowed(hints[f.name], f.metadata), comments.get(f.name, "")))
    return listing


def describe_keys() -> str:
    """The text of `--help`: every key by group, with its default, its limits and its comment."""
    lines = ["Keys: set them in a config file (key = value) or on the command line (--key=value).", ""]
    for group, keys in keys_by_group().items():
        lines.append(group)
        for name, default, limits, comment in keys:
            default = default if len(default) <= 24 else default[:21] + "..."
            limits = f" [{limits}]" if limits else ""
            lines.append(f"  {name:<28} {default:<24}  {comment}{limits}")
        lines.append("")
    return "\n".join(lines)


def class_source(cls) -> tuple[ast.ClassDef, list[str]]:
    source = textwrap.dedent(inspect.getsource(cls))
    return ast.parse(source).body[0], source.splitlines()


def trailing_comments(cls) -> dict[str, str]:
    """{field: the comment that ends the first line of its declaration}."""
    node, lines = class_source(cls)
    comments = {}
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign):
            line = lines[statement.lineno - 1]
            tokens = tokenize.generate_tokens(io.StringIO(line).readline)
            try:
                found = [t.string for t in tokens if t.type == tokenize.COMMENT]
            except tokenize.TokenError:  # a declaration that goes on over more lines
                found = re.findall(r"#.*$", line)
            if found:
                comments[statement.target.id] = found[-1].lstrip("# ").strip()
    return comments


def headers(cls) -> dict[str, str]:
    """{first field under each `# --- group ---` header: the group's name}."""
    node, lines = class_source(cls)
    starts, previous_end = {}, node.body[0].end_lineno
    for statement in node.body[1:]:
        between = lines[previous_end : statement.lineno - 1]  # the comment lines above statement
        names = [m.group(1) for m in (re.fullmatch(r"\s*# --- (.+?) -*", line) for line in between) if m]
        if names and isinstance(statement, ast.AnnAssign):
            starts[statement.target.id] = names[-1]
        previous_end = statement.end_lineno
    return starts


def read_config_file(path: str) -> dict:
    """Run a config file and return its public assignments (modules and functions left out)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"config file {path} not found; the published ones are in config/")
    if RUNS_DIR in file.resolve().parents:
        raise UserError(f"refusing to run {path}: config files are code, and out/ holds run outputs")
    namespace: dict = {}
    # Config files may import shared settings (`from config.shakespeare_common import *`),
    # wherever the script was started from.
    sys.path.insert(0, str(REPO_ROOT))
    try:
        exec(compile(file.read_text(), str(file), "exec"), namespace)
    except Exception as error:  # a broken config is the user's to fix, in one line
        raise UserError(f"config file {path} failed to run: {type(error).__name__}: {error}")
    except SystemExit as error:  # exit() would end the script silently, as if it had done its work
        raise UserError(f"config file {path} called exit({error.code if error.code is not None else ''}); "
                        "a config file only assigns keys (n_layer = 6)")
    finally:
        sys.path.remove(str(REPO_ROOT))
    return {
        k: v for k, v in namespace.items()
        if not k.startswith("_") and not isinstance(v, (types.ModuleType, types.FunctionType, type))
    }


def parse_value(raw: str):
    """A Python literal if it is one (3, 6e-4, True, None, [1, 2]), else the string itself."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def check_key(key: str, hints: dict, source: str | None) -> None:
    if key in hints:
        return
    where = f" on {source}" if source == "the command line" else f" in {source}" if source else ""
    close = difflib.get_close_matches(key, hints, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else "; python train.py --help lists the valid keys"
    raise UserError(f"unknown config key {key!r}{where}{hint}")


def check_type(key: str, value, expected, source: str | None):
    """Return value if it fits the annotation (an int is accepted, as a float, for a float key;
    a Literal asks for the type of its choices, and `validate` then checks the choice)."""
    kinds = [type(typing.get_args(k)[0]) if typing.get_origin(k) is Literal else typing.get_origin(k) or k
             for k in union_members(expected)]
    for kind in kinds:
        if kind is type(None) and value is None:
            return value
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool):
            continue
        if kind is not type(None) and isinstance(value, kind):
            return value
    names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
    where = f" on {source}" if source == "the command line" else f" in {source}" if source else ""
    raise UserError(
        f"config key {key!r}{where} must be {names}, got {value!r} ({type(value).__name__})"
    )
