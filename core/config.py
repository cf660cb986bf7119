"""Configuration: plain-Python config files plus `--key=value` overrides, checked against one schema.

Like nanoGPT, a config file is Python assignments (`n_layer = 6`) and runs as code, so only run
config files you trust; unlike nanoGPT, the result is a dataclass instance (importable, testable),
and an unknown key or a value of the wrong type is refused with a one-line `UserError`.

Every script reads the same `Config`, so one file can hold training, sampling and experiment keys.
"""

import ast
import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError
from models import MODELS, ModelConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_DIR = REPO_ROOT / "out"
POSTHOC_CHOICES = ("none", "svd", "dictionary")  # see experiments/posthoc.py


@dataclass
class Config:
    # --- I/O --------------------------------------------------------------------------------
    out_dir: str = "out/default"
    eval_interval: int = 2000
    log_interval: int = 1
    eval_iters: int = 200
    eval_only: bool = False
    always_save_checkpoint: bool = True
    init_from: str = "scratch"  # 'scratch', 'resume', or a checkpoint path / run directory
    seed: int = 1337
    # --- logging ----------------------------------------------------------------------------
    wandb_log: bool = False
    wandb_project: str = "reflow"
    wandb_run_name: str = "run"
    # --- data -------------------------------------------------------------------------------
    data_dir: str = "data"  # datasets live in data_dir/<dataset>/
    dataset: str = "openwebtext"  # a folder holding train.bin and val.bin (+ optional *_mask.bin)
    gradient_accumulation_steps: int = 40  # micro-batches per global batch, over all ranks
    batch_size: int = 12  # sequences per micro-batch
    block_size: int = 1024
    # --- model ------------------------------------------------------------------------------
    model: str = "reflow"  # gpt2, gpt2-new, reflow, reflow-topk, reflow-lite
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_kv_head: int | None = None  # reflow-lite: key/value heads; None means n_head
    n_signals: int = 1024  # reflow family: S
    topk: int = 64  # reflow-topk: entries kept per recipe row
    vocab_size: int = 50304
    dropout: float = 0.0
    bias: bool = False
    # --- optimizer --------------------------------------------------------------------------
    learning_rate: float = 6e-4
    max_iters: int = 600000
    weight_decay: float = 1e-1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    # --- learning-rate schedule -------------------------------------------------------------
    decay_lr: bool = True  # warmup then cosine decay; False keeps learning_rate constant
    warmup_iters: int = 2000
    lr_decay_iters: int = 600000
    min_lr: float = 6e-5
    # --- system -----------------------------------------------------------------------------
    backend: str = "nccl"  # DDP backend on GPUs; CPU runs always use gloo
    device: str = "auto"  # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype: str = "auto"  # 'auto', 'float32', 'bfloat16', 'float16'
    compile: bool = False
    on_nonfinite: str = "stop"  # a NaN/inf loss: 'stop' the run, or 'skip' the step
    # --- sampling (sample.py) ---------------------------------------------------------------
    start: str = "\n"  # prompt, or FILE:path to read it from a file
    num_samples: int = 3
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 200
    chat: bool = False  # chat mode: prompts are wrapped in the chat template (core/chat.py)
    use_cache: bool = True  # key/value cache; False recomputes the whole context each step
    # --- experiments (experiment.py) --------------------------------------------------------
    probe_words: list = field(default_factory=lambda: [" king", " queen", " man", " woman"])
    # Every word below must be one GPT-2 token; most take a leading space (" king", not "king").
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
    positive_words: list = field(default_factory=lambda: [
        " good", " great", " happy", " love", " wonderful", " beautiful", " excellent", " best"])
    negative_words: list = field(default_factory=lambda: [
        " bad", " terrible", " sad", " hate", " awful", " ugly", " horrible", " worst"])
    steer_prompts: list = field(default_factory=lambda: ["I think that", "The movie was", "Today I feel"])
    steer_alpha: float = 0.15  # steering strength, in units of the residual stream's mean norm
    concept_words: list = field(default_factory=lambda: [" Paris", " love"])
    concept_prompt: str = "I went to the"
    concept_alpha_max: float = 16.0  # Concept Inception searches alpha in [0, this]
    hijack_strength: float = 1.0  # Genetic Hijack: 0 leaves recipes, 1 replaces them outright
    audit_tokens: int = 16384  # validation tokens read by the experiments that need text
    audit_vocab: int = 2000  # word searches run over this many most frequent training tokens
    audit_sample_tokens: int = 32  # length of each generated sample in the reports
    # --- models (issues 11, 15, 17) ---
    attention: str = "softmax"  # 'softmax', or 'sigmoid': sigmoid(q.k/sqrt(D) + b), no normalization
    sigmoid_bias: str = "-log(T)"  # sigmoid attention's b: '-log(T)' (T = keys the query sees) or 'learned'
    chunked_loss: bool = False  # cross-entropy in chunks of positions: the (B, T, V) logits never exist
    loss_chunk_size: int = 1024  # positions per chunk under chunked_loss
    activation_checkpointing: bool = False  # recompute each block in the backward: less memory, more time

    # --- regularizers (issue 15): all off at 0; definitions in training/regularizers.py ------
    recipe_l1: float = 0.0  # soft recipe sparsity, mean ||r||_1 / (sqrt(S) ||r||_2) (reflow family)
    repulsion: float = 0.0  # STT repulsion: mean squared cosine between positions' hidden states
    head_diversity: float = 0.0  # STT head diversity: mean cosine between heads' attention patterns
    regularize_layers: list = field(default_factory=list)  # layers repulsion/head_diversity read; [] = all

    # --- scale (issue 17) -------------------------------------------------------------------
    shard: str = "none"  # 'none', 'optimizer' (ZeRO-1) or 'full' (FSDP2); see training/sharding.py
    collective_timeout_s: float = 600.0  # a rank waiting this long on the others stops with an error
    # --- studies and post-hoc baselines (issue 13) ----------------------------------------------
    # gpt2 / gpt2-new have no recipes; the recipe experiments can read a factorization of their
    # embedding cut after training instead (experiments/posthoc.py): one of POSTHOC_CHOICES.
    posthoc: str = "none"
    posthoc_active_fraction: float = 0.11  # dictionary: nonzeros per recipe / S (the paper's reflow: ~11%)

    def model_config(self) -> ModelConfig:
        """The architecture part of this config."""
        names = {f.name for f in dataclasses.fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_args(argv: list[str]) -> tuple[str | None, dict[str, str]]:
    """Split `[CONFIG_FILE] [--key=value ...]` into the file (or None) and raw override strings."""
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


def load_config(config_file: str | None = None, overrides: dict[str, str] | None = None,
                schema: type = Config):
    """Defaults, then the config file's assignments, then the overrides; each key checked."""
    values = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    hints = typing.get_type_hints(schema)
    for key, value in values.items():
        check_key(key, hints, source=config_file)
        values[key] = check_type(key, value, hints[key], source=config_file)
    for key, raw in (overrides or {}).items():
        check_key(key, hints, source="the command line")
        values[key] = check_type(key, parse_value(raw), hints[key], source="the command line")
    config = schema(**values)
    if isinstance(config, Config):
        validate(config)
    return config


def validate(config: Config) -> None:
    """Checks across keys, so a bad combination fails here and not deep inside a model."""
    if config.model not in MODELS:
        raise UserError(f"unknown model {config.model!r}; valid models: {', '.join(MODELS)}")
    if config.n_embd % config.n_head:
        raise UserError(f"n_embd ({config.n_embd}) must be a multiple of n_head ({config.n_head})")
    kv = config.n_kv_head or config.n_head
    if config.n_head % kv:
        raise UserError(f"n_head ({config.n_head}) must be a multiple of n_kv_head ({kv})")
    if config.model == "reflow-lite" and kv >= config.n_head:
        raise UserError(f"reflow-lite needs n_kv_head < n_head ({config.n_head}); e.g. --n_kv_head=4")
    if config.posthoc not in POSTHOC_CHOICES:
        raise UserError(f"posthoc must be one of {', '.join(POSTHOC_CHOICES)}, got {config.posthoc!r}")
    if not 0 < config.posthoc_active_fraction <= 1:
        raise UserError(f"posthoc_active_fraction must be in (0, 1], got {config.posthoc_active_fraction}")
    for key, valid in (("attention", ("softmax", "sigmoid")), ("sigmoid_bias", ("-log(T)", "learned"))):
        value = getattr(config, key)
        if value not in valid:
            raise UserError(f"{key} must be one of {', '.join(map(repr, valid))}, got {value!r}")
    if config.loss_chunk_size < 1:
        raise UserError(f"loss_chunk_size must be at least 1, got {config.loss_chunk_size}")
    if config.model == "reflow-topk" and not 0 < config.topk <= config.n_signals:
        raise UserError(f"topk ({config.topk}) must be between 1 and n_signals ({config.n_signals})")


def from_dict(values: dict, schema: type = Config):
    """A config from a saved dict (a checkpoint's `config`), ignoring keys this version dropped."""
    names = {f.name for f in dataclasses.fields(schema)}
    return schema(**{k: v for k, v in values.items() if k in names})


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
    hint = f"; did you mean {close[0]!r}?" if close else "; see core/config.py for the valid keys"
    raise UserError(f"unknown config key {key!r}{where}{hint}")


def check_type(key: str, value, expected, source: str | None):
    """Return value if it fits the annotation (an int is accepted, as a float, for a float key)."""
    is_union = typing.get_origin(expected) in (typing.Union, types.UnionType)
    allowed = typing.get_args(expected) if is_union else (expected,)
    for kind in allowed:
        kind = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return value
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool):
            continue
        if kind is not type(None) and isinstance(value, kind):
            return value
    names = " or ".join("None" if k is type(None) else getattr(k, "__name__", str(k)) for k in allowed)
    where = f" on {source}" if source == "the command line" else f" in {source}" if source else ""
    raise UserError(
        f"config key {key!r}{where} must be {names}, got {value!r} ({type(value).__name__})"
    )
