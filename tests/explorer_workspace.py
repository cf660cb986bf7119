"""A loaded explorer over a tiny checkpoint (experiment_workspace's run: 1024-token vocabulary, toy
validation text), for the explorer's function and browser tests; and one over a vocab='corpus'
checkpoint, whose token ids are not GPT-2's."""

import dataclasses
from pathlib import Path

import numpy as np
import torch
from experiment_workspace import REPO, SETTINGS, make_run

from core.checkpoint import save_checkpoint, vocab_entry
from core.config import Config, load_config
from core.tokenizer import END_OF_TEXT_ID, Tokenizer, encode
from explorer.state import ExplorerState, load_state
from models import build_model

CORPUS_CHARS = 4000  # Shakespeare's opening: ~470 distinct GPT-2 ids
CORPUS_EXTRA_TEXT = " 🙂 猫"  # byte tokens: an emoji and a CJK character split across GPT-2 byte ids


def make_state(root: Path, model_name: str = "reflow", **overrides) -> ExplorerState:
    config_file, _ = make_run(root, model_name)
    return load_state(load_config(str(config_file), {k: str(v) for k, v in overrides.items()}))


def make_corpus_state(root: Path) -> ExplorerState:
    """An explorer over a randomly initialized reflow whose vocabulary is vocab='corpus': model id i is
    the i-th smallest GPT-2 id of its validation text (Shakespeare's opening and a few byte tokens), so
    a model id and the GPT-2 id it stands for differ."""
    text = (REPO / "data" / "shakespeare" / "input.txt").read_text(encoding="utf-8")[:CORPUS_CHARS]
    text += CORPUS_EXTRA_TEXT
    ids = np.array(encode(text), dtype=np.uint16)
    (root / "data" / "toy").mkdir(parents=True)
    ids.tofile(root / "data" / "toy" / "val.bin")
    kept = sorted(set(ids.tolist()) | {END_OF_TEXT_ID})
    tokenizer = Tokenizer(-(-len(kept) // 64) * 64, kept)  # padded to a multiple of 64, as train.py does
    cfg = Config(model="reflow", out_dir=str(root / "corpus"), data_dir=str(root / "data"),
                 **{**SETTINGS, "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(0)
    model = build_model("reflow", cfg.model_config())
    saved = dataclasses.replace(cfg, vocab="corpus", vocab_size=Config().vocab_size)  # as train.py saves it
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config), "iter_num": 5,
                     "config": saved.to_dict(), **vocab_entry(tokenizer)}, Path(cfg.out_dir) / "ckpt.pt")
    return load_state(saved)
