"""What each run of a study measured: its metric values, their random-init references, its loss curve.

Two metrics are computed here. "crystallization depth": for each of cfg.target_prompts, the first
layer from which the logit lens ranks the target first through the last layer, as a fraction of the
depth (0 = already after the embedding, 1 = only after the last layer); the mean over the prompts
whose target the model predicts at all. "val loss" is not read from training's own evaluations:
those use eval windows
drawn from the run's seed, so two seeds would be scored on different text. Here every run is
scored on the same text (audit_tokens tokens of val.bin, in block_size windows spread evenly over the
split), and the same measure on a random-init model of the arm is its reference. Kept in
RUN/study_val_loss.json.

Every other metric "N:name" is read from experiment N's report in the run's reports folder, with
the report's control value as its random-init reference when the control is the random-init models;
"N:name (gain over control)" is that value minus the report's control, per run (analogy MRR over the
no-offset baseline, selectivity over random init). The floors are in studying/floors.py.
"""

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.checkpoint import architecture_of, load_checkpoint, model_from_checkpoint, tokenizer_of
from core.config import Config
from core.errors import UserError
from core.i18n import N_, _, translate
from experiments.context import reports_dir_name
from experiments.registry import EXPERIMENTS
from experiments.report import write_atomic
from models import build_model
from studying.spec import GAIN
from training.run_log import VAL_HISTORY_NAME, read_val_history

VAL_LOSS = "val loss"
# Definitions are prose: written into the comparison in its language (core.i18n).
VAL_LOSS_DEFINITION = N_(
    "mean next-token cross-entropy (nats) of the final checkpoint on audit_tokens tokens of "
    "val.bin, in block_size windows spread evenly over the split: the same text for every run and arm. "
    "Lower is better. Reference: the same on a random-init model of the arm."
)
VAL_LOSS_FILE = "study_val_loss.json"
CRYSTALLIZATION = "crystallization depth"
CRYSTALLIZATION_DEFINITION = N_(
    "for each target prompt, the first layer l from which the logit lens (final norm, "
    "vocab matrix) ranks the target #1 through the last layer, as l / n_layer (0: "
    "after the embedding, 1: only after the last layer); mean over the prompts whose "
    "target the model predicts (none: not measured). Lower: predictions form earlier."
)
EVAL_BATCH = 8  # windows per forward


@dataclass
class RunOutcome:
    """One run's numbers."""

    run_dir: Path
    seed: int  # the training seed: runs of two arms at one seed are a pair
    values: dict[str, float] = field(default_factory=dict)  # metric -> value (missing: not measured)
    random_init: dict[str, float] = field(default_factory=dict)  # metric -> random-init reference
    definitions: dict[str, str] = field(default_factory=dict)
    available: set[str] = field(default_factory=set)  # every metric name its reports hold
    history: dict[int, float] = field(default_factory=dict)  # step -> val loss (training's evaluations)


def val_windows(cfg: Config) -> np.ndarray:
    """The study's val text: audit_tokens // block_size windows of block_size + 1 tokens, spread evenly
    over val.bin. Spread, not the first audit_tokens tokens: Shakespeare's val split opens with a
    passage that is unusually hard for the models (a 4 x 128 reflow scores 4.94 nats on its first
    16k tokens and 4.65 on the whole split; a bigram model 4.90 and 4.83)."""
    path = Path(cfg.data_dir) / cfg.dataset / "val.bin"
    if not path.is_file():
        raise UserError(f"no validation text at {path} for the study's val loss; prepare the dataset")
    tokens = np.fromfile(path, dtype=np.uint16).astype(np.int64)
    T = min(cfg.block_size, len(tokens) - 1)
    if T < 1:
        raise UserError(f"{path} holds fewer than 2 tokens; prepare the dataset again")
    n = max(1, min(cfg.audit_tokens // T, len(tokens) - T))
    starts = np.linspace(0, len(tokens) - T - 1, n).round().astype(np.int64)
    return tokens[starts[:, None] + np.arange(T + 1)]


@torch.no_grad()
def text_loss(model, windows: np.ndarray) -> float:
    """Mean cross-entropy of next-token prediction over windows (n, T + 1) of token ids."""
    x = torch.from_numpy(windows[:, :-1])
    y = torch.from_numpy(windows[:, 1:])
    total = 0.0
    for xb, yb in zip(x.split(EVAL_BATCH), y.split(EVAL_BATCH), strict=True):
        logits, _loss = model(xb)
        total += F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="sum").item()
    return total / y.numel()


def text_key(cfg: Config) -> str:
    """What the cached val loss was measured on: a cache from other text is measured again."""
    return f"{cfg.dataset}: {cfg.audit_tokens} tokens in {cfg.block_size}-token windows spread over val.bin"


def val_loss(run_dir: Path, cfg: Config) -> tuple[float, float]:
    """(the run's val loss, a random-init model's) on the shared text; cached beside the checkpoint
    for the checkpoint's step."""
    checkpoint = load_checkpoint(run_dir)
    cache = run_dir / VAL_LOSS_FILE
    try:
        saved = json.loads(cache.read_text())
        if saved["iter_num"] == checkpoint.get("iter_num") and saved["text"] == text_key(cfg):
            return saved["loss"], saved["random_init"]
    except (OSError, ValueError, KeyError):
        pass
    # val.bin holds GPT-2 ids; a vocab='corpus' model reads them through its own map (every val id is
    # kept, since the corpus's ids are counted over train.bin and val.bin).
    windows = tokenizer_of(checkpoint).from_gpt2(val_windows(cfg), what=f"{cfg.dataset}/val.bin")
    model = model_from_checkpoint(checkpoint).float().eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        random_model = build_model(*architecture_of(checkpoint)).float().eval()
    loss, random_loss = text_loss(model, windows), text_loss(random_model, windows)
    write_atomic(
        cache,
        json.dumps(
            {
                "iter_num": checkpoint.get("iter_num"),
                "text": text_key(cfg),
                "loss": loss,
                "random_init": random_loss,
            }
        )
        + "\n",
    )
    return loss, random_loss


@torch.no_grad()
def crystallization_depth(run_dir: Path, cfg: Config) -> float | None:
    """CRYSTALLIZATION_DEFINITION, on the run's checkpoint."""
    from experiments.common import lens_logits

    checkpoint = load_checkpoint(run_dir)
    model = model_from_checkpoint(checkpoint).float().eval()
    tokenizer = tokenizer_of(checkpoint)  # GPT-2's ids, or a vocab='corpus' model's own
    depths = []
    for prompt, target in cfg.target_prompts:
        ids, target_ids = (tokenizer.encode(text, "target_prompts") for text in (prompt, target))
        if not ids or len(target_ids) != 1:
            continue
        states = torch.stack([h[0, -1] for h in model.hidden_states(torch.tensor([ids]))])  # (L+1, C)
        top = lens_logits(model, states).argmax(-1).tolist()
        if top[-1] != target_ids[0]:
            continue
        first = len(top) - 1
        while first > 0 and top[first - 1] == target_ids[0]:
            first -= 1
        depths.append(first / model.config.n_layer)
    return float(np.mean(depths)) if depths else None


def read_report_metrics(folder: Path, number: int) -> dict | None:
    path = folder / f"{number:02d}_{EXPERIMENTS[number].slug}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def collect(run_dir: Path, cfg: Config, metrics: list[str]) -> RunOutcome:
    """The outcome of one finished, evaluated run for the study's metrics."""
    outcome = RunOutcome(run_dir, cfg.seed)
    outcome.history = {
        int(step): losses["val"]
        for step, losses in read_val_history(run_dir / VAL_HISTORY_NAME).items()
        if "val" in losses
    }
    if VAL_LOSS in metrics:
        outcome.values[VAL_LOSS], outcome.random_init[VAL_LOSS] = val_loss(run_dir, cfg)
        outcome.definitions[VAL_LOSS] = _(VAL_LOSS_DEFINITION)
        outcome.available.add(VAL_LOSS)
    if CRYSTALLIZATION in metrics:
        outcome.available.add(CRYSTALLIZATION)
        outcome.definitions[CRYSTALLIZATION] = _(CRYSTALLIZATION_DEFINITION)
        depth = crystallization_depth(run_dir, cfg)
        if depth is not None:
            outcome.values[CRYSTALLIZATION] = depth
    folder = run_dir / reports_dir_name(cfg)
    for metric in metrics:
        if metric in (VAL_LOSS, CRYSTALLIZATION):
            continue
        gain = metric.endswith(GAIN)
        number, _sep, name = metric.removesuffix(GAIN).partition(":")
        report = read_report_metrics(folder, int(number))
        if report is None or report.get("skipped"):
            continue
        for m in report.get("metrics", []):
            outcome.available.add(f"{int(number)}:{m['name']}")
            if isinstance(m.get("control"), (int, float)):
                outcome.available.add(f"{int(number)}:{m['name']}{GAIN}")
            if m["name"] != name.strip():
                continue
            value, control = finite(m.get("value")), finite(m.get("control"))
            if gain:  # the gain over the report's own baseline: no offset, random init, ...
                if value is not None and control is not None:
                    outcome.values[metric] = value - control
                continue
            if value is not None:
                outcome.values[metric] = value
            if control is not None and "random-init" in (m.get("control_name") or ""):
                outcome.random_init[metric] = control
        definition = metric_definition(name.strip(), report.get("definitions", {}))
        if gain:
            named = [m for m in report.get("metrics", []) if m["name"] == name.strip()]
            baseline = named[0].get("control_name") if named else None
            definition = _("{metric} minus its control in the same report ({control}), per run: the gain "
                           "over that baseline. {definition}").format(
                metric=translate(name.strip()), control=translate(baseline) if baseline else _("none"),
                definition=definition).strip()
        outcome.definitions[metric] = definition
    return outcome


def finite(value) -> float | None:
    """A report's number as a float, or None when it is missing, not a number or not finite."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def metric_definition(name: str, definitions: dict[str, str]) -> str:
    """A report defines concepts ("log-prob drop", "basis null"), and its metric names combine them
    ("log-prob drop, the top signal: percentile in the basis null"): the metric's definition is every
    defined concept its name contains as whole words, longest first, each once."""
    if name in definitions:
        return definitions[name]
    found = [key for key in sorted(definitions, key=len, reverse=True)
             if re.search(rf"(?<!\w){re.escape(key)}(?!\w)", name, flags=re.IGNORECASE)]
    return " ".join(f"{key}: {definitions[key]}" for key in found)


def check_metrics_exist(metrics: list[str], outcomes: list[RunOutcome]) -> None:
    """A metric that no run's report holds is a mistake in the study file: say so, with the names
    there are."""
    available = set().union(*(o.available for o in outcomes)) if outcomes else set()
    for metric in metrics:
        if metric not in available and any(o.available for o in outcomes):
            number = metric.partition(":")[0]
            names = sorted(m for m in available if m.startswith(f"{number}:"))
            raise UserError(
                f"metric {metric!r} is in no run's report; experiment {number} reports: "
                f"{', '.join(names) or 'nothing (skipped or not run)'}"
            )
