"""A tiny run for the experiment tests: a checkpoint, validation text and a config file in a folder.

The models have a 1024-token vocabulary (every forward is then cheap), so the config's probe words,
prompts and the validation text use only GPT-2 ids below 1024 (" he", " of", "I think that", ...).
"""

from pathlib import Path

import numpy as np
import torch

from core.checkpoint import save_checkpoint
from core.config import Config
from core.tokenizer import encode
from models import build_model

REPO = Path(__file__).resolve().parent.parent
VOCAB = 1024

SETTINGS = dict(
    n_layer=2, n_head=4, n_embd=32, block_size=32, vocab_size=VOCAB, n_signals=16, topk=4,
    dataset="toy", device="cpu", seed=7, audit_tokens=512, audit_vocab=200, audit_sample_tokens=6,
    floor_draws=20,  # the tests of the floor set their own; 200 would only slow the others
    probe_words=[" he", " she", " man", " him"],
    word_groups={"pronouns": [" he", " she", " they", " we"], "prepositions": [" of", " to", " in", " on"],
                 "verbs": [" have", " make", " get", " know"]},
    analogies=[[" he", " him", " her", " she"]],
    typo_sentences=[["I know that", "I konw that", "The man said"]],
    target_prompts=[["I think that", " the"]],
    positive_words=[" good", " well", " right"], negative_words=[" not", " no", " off"],
    steer_prompts=["I think that", "The man said"],
    concept_words=[" man"], concept_prompt="I know that", concept_alpha_max=8.0,
    sae_widths=[16, 64], sae_k=4, sae_steps=20,  # experiment 15's SAEs, small enough for every `all` run
)


def write_validation_text(data_dir: Path) -> None:
    """Shakespeare's opening as GPT-2 ids, keeping only the ids this vocabulary holds."""
    text = (REPO / "data" / "shakespeare" / "input.txt").read_text(encoding="utf-8")[:12000]
    ids = np.array([i for i in encode(text) if i < VOCAB], dtype=np.uint16)
    (data_dir / "toy").mkdir(parents=True, exist_ok=True)
    ids.tofile(data_dir / "toy" / "val.bin")


def make_run(root: Path, model_name: str, seed: int = 0) -> tuple[Path, Config]:
    """Save a randomly initialized `model_name` checkpoint under root/model_name, and a config file
    for it; returns (config file, config)."""
    data_dir = root / "data"
    if not (data_dir / "toy" / "val.bin").exists():
        write_validation_text(data_dir)
    extra = {"n_kv_head": 2} if model_name == "reflow-lite" else {}
    cfg = Config(model=model_name, out_dir=str(root / model_name), data_dir=str(data_dir),
                 **SETTINGS, **extra)
    torch.manual_seed(seed)
    model = build_model(model_name, cfg.model_config())
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config), "iter_num": 5,
                     "config": cfg.to_dict()}, Path(cfg.out_dir) / "ckpt.pt")
    config_file = root / f"{model_name}_config.py"
    keys = ["model", "out_dir", "data_dir", *SETTINGS, *extra]
    config_file.write_text("".join(f"{k} = {getattr(cfg, k)!r}\n" for k in keys))
    return config_file, cfg
