"""What the explorer loads once and every view reads: the model and its precomputed tables.

Loaded: the checkpoint (as data), in fp32 and eval mode, and the reading its signals are (its recipes'
basis, or an SAE's latents with `sae`: explorer/reading.py). Precomputed: the token table the neighbour
and analogy searches use (recipes, or the embedding on models without recipes), normalized once; the
searchable vocabulary (the most frequent tokens of the training text); per-signal statistics over a
fixed validation slice; and a copy of every weight, to prove after each intervention that it left
them alone.
"""

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from core.checkpoint import (
    load_checkpoint_of,
    model_from_checkpoint,
    tokenizer_of,
)
from core.config import Config
from core.errors import UserError
from core.hardware import resolve_device
from core.tokenizer import Tokenizer
from experiments.context import Context
from experiments.posthoc import Factorization
from explorer.factorization import factorization_of
from explorer.reading import BasisReading, SignalReading, sae_reading
from explorer.signal_stats import SignalStats, cached_signal_statistics
from models import Transformer

SEARCH_VOCAB = 8000  # neighbour and analogy searches run over this many most frequent training tokens
STATS_TOKENS = 8192  # validation tokens behind the per-signal statistics


@dataclass
class ExplorerState:
    model: Transformer
    cfg: Config
    model_name: str
    checkpoint: str
    iter_num: int | None
    tokenizer: Tokenizer  # the model's ids <-> GPT-2's: every word typed and token shown goes through it
    factorization: Factorization | None
    factorization_note: str  # where the recipes come from, or why there are none
    reading: SignalReading | None  # what the Signal view reads as signals (None: nothing)
    vocabulary: torch.Tensor  # (K,) searchable token ids, most frequent first
    token_space: str  # "recipe space" or "embedding space"
    token_table: torch.Tensor  # (V, D) every token's row in that space
    vocab_matrix: torch.Tensor  # (V, C) the model's embedding / readout, computed once (steering reads rows)
    unit_rows: torch.Tensor  # (K, D) the searchable rows, normalized: neighbours are one matmul
    signal_stats: SignalStats | None
    signal_stats_note: str  # what text the statistics cover, or why there are none
    reference_weights: list[torch.Tensor]  # a copy of every parameter as loaded
    timings: dict = field(default_factory=dict)  # seconds per start-up stage, for the benchmark
    # Hooks live on the shared model, so two requests must not run it at once: one could see the
    # other's intervention.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    @property
    def n_layer(self) -> int:
        return self.model.config.n_layer


def weights_unchanged(state: "ExplorerState") -> bool:
    """Whether every parameter still equals, bit for bit, its copy taken at loading. An exact
    comparison is also the cheapest check: one pass, no arithmetic (a float64 checksum costs several)."""
    return all(torch.equal(p, ref) for p, ref in zip(state.model.parameters(), state.reference_weights,
                                                      strict=True))


@torch.no_grad()
def restore_weights(state: "ExplorerState") -> None:
    for p, ref in zip(state.model.parameters(), state.reference_weights, strict=True):
        p.copy_(ref)


def load_model(cfg: Config, ckpt: str | None) -> tuple[Transformer, Tokenizer, str, str, int | None]:
    """The model from --ckpt (or the config's out_dir) in fp32 eval mode; (model, its tokenizer, name,
    file, iter)."""
    checkpoint, name, file = load_checkpoint_of(cfg, ckpt)
    model = model_from_checkpoint(checkpoint)
    model = model.to(device=resolve_device(cfg.device), dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # nothing here trains
    return model, tokenizer_of(checkpoint), name, str(file), checkpoint.get("iter_num")


def load_state(cfg: Config, ckpt: str | None = None, sae: str | None = None) -> ExplorerState:
    """Load the checkpoint and precompute every table the views reuse; `sae`, a folder holding a saved
    SAE (explore.py --posthoc=sae:PATH), makes its latents the signals."""
    timings = {}
    start = time.perf_counter()
    model, tokenizer, name, file, iter_num = load_model(cfg, ckpt)
    reading = sae_reading(sae, model) if sae is not None else None  # a bad folder is refused before any work
    timings["load checkpoint"] = time.perf_counter() - start

    start = time.perf_counter()
    # The experiments' Context knows where the text is and how to read it; the explorer writes nothing.
    text_cfg = dataclasses.replace(cfg, audit_vocab=SEARCH_VOCAB, audit_tokens=STATS_TOKENS)
    text = Context(model=model, cfg=text_cfg, model_name=name, model_args=vars(model.config), checkpoint=file,
                   iter_num=iter_num, reports_dir=Path(file).parent, tokenizer=tokenizer)
    try:
        vocabulary = text.frequent_tokens
    except (UserError, OSError):
        vocabulary = torch.tensor([])
    if len(vocabulary) == 0:  # no text to count: search every token the tokenizer can produce
        vocabulary = torch.arange(tokenizer.n_vocab)
    if reading is None:
        factorization, note = factorization_of(model, name, cfg, rows=vocabulary)
        reading = BasisReading(factorization) if factorization is not None else None
    else:  # the recipe views' signals would be another set than the Signal view's latents
        factorization, note = None, (f"the signals are {reading.description}; an SAE latent has no "
                                     "recipe, so recipe bars, codebooks, the signal flow, drivers and "
                                     "signal removal are off")
    if factorization is not None:
        space, table = "recipe space", factorization.recipes
    else:
        space, table = "embedding space", model.vocab_matrix().detach().float()
    table = table.cpu()
    with torch.no_grad():
        vocab_matrix = model.vocab_matrix().detach()  # on reflow a (V, S) @ (S, C) product: once
    timings["token tables"] = time.perf_counter() - start

    start = time.perf_counter()
    stats, stats_note, cache_note = None, "", "none"
    if reading is None:
        stats_note = note
    else:
        try:
            windows = text.text_windows()
            stats, cache_note = cached_signal_statistics(model, reading, windows, Path(file))
            stats_note = (f"over the first {windows.numel():,} tokens of {text.val_path} "
                          f"({len(windows)} windows of {windows.size(1)})")
        except UserError as error:
            stats_note = f"no per-signal statistics: {error}"
    timings[f"signal statistics ({cache_note})"] = time.perf_counter() - start

    start = time.perf_counter()
    reference = [p.detach().clone() for p in model.parameters()]
    timings["copy of the weights"] = time.perf_counter() - start
    return ExplorerState(
        model=model, cfg=cfg, model_name=name, checkpoint=file, iter_num=iter_num, tokenizer=tokenizer,
        factorization=factorization, factorization_note=note, reading=reading, vocabulary=vocabulary,
        token_space=space, token_table=table, vocab_matrix=vocab_matrix,
        unit_rows=F.normalize(table[vocabulary], dim=-1),
        signal_stats=stats,
        signal_stats_note=stats_note, reference_weights=reference, timings=timings,
    )
