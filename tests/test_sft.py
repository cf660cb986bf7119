"""SFT end to end on a small local JSONL: data/sft-lima/prepare.py writes ids and a loss mask through
the chat template, masked positions contribute nothing to the loss, and a short fine-tune with
train.py lowers the loss on assistant tokens."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.chat import encode_conversation
from core.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from core.config import Config, load_config
from core.errors import UserError
from core.tokenizer import END_OF_TEXT, decode
from models import build_model

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("prepare_lima", REPO / "data" / "sft-lima" / "prepare.py")
prepare_lima = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare_lima)

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"),
            ("Cuba", "Havana"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Poland", "Warsaw")]


def conversations() -> list[list[str]]:
    """Single-turn questions with a fixed answer pattern, and one multi-turn conversation. The user
    turns start with words no answer uses, so the loss on them shows whether they were trained on."""
    convs = [[f"zebra quilt zebra quilt. What is the capital of {country}?",
              f"The capital of {country} is {city}."] for country, city in CAPITALS]
    convs.append(["zebra quilt. Name a country.", "France.", "And its capital?", "The capital is Paris."])
    return convs


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_split(directory: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = np.fromfile(directory / f"{split}.bin", dtype=np.uint16)
    mask = np.fromfile(directory / f"{split}_mask.bin", dtype=np.uint8)
    assert len(ids) == len(mask)
    return torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))


def masked_targets(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The documented rule (train.py): a target whose mask is 0 becomes -1, ignored by the loss."""
    return torch.where(mask == 1, ids, torch.full_like(ids, -1))


@pytest.fixture
def sft_dir(tmp_path) -> Path:
    """A prepared dataset in tmp_path/sft-lima from a local JSONL, as a user would make it offline."""
    jsonl = write_jsonl(tmp_path / "chats.jsonl", [{"conversations": c} for c in conversations()])
    prepare_lima.main([f"--input={jsonl}", f"--out_dir={tmp_path / 'sft-lima'}", "--val_fraction=0.25"])
    return tmp_path / "sft-lima"


# --- prepare.py --------------------------------------------------------------------------------
def test_prepare_writes_the_template_and_trains_on_assistant_tokens_only(sft_dir):
    train, val = prepare_lima.split(conversations(), 0.25, 1337)
    assert len(val) == 3 and sorted(train + val) == sorted(conversations())  # by conversation
    for split, part in (("train", train), ("val", val)):
        ids, mask = read_split(sft_dir, split)
        text = decode(ids.tolist())
        # The trained tokens are exactly the assistant turns, each ending with <|endoftext|>.
        assert decode(ids[mask == 1].tolist()) == "".join(t + END_OF_TEXT for c in part for t in c[1::2])
        assert text.count("### User:\n") == text.count("### Assistant:\n") == sum(len(c) // 2 for c in part)
        assert text.startswith(f"### User:\n{part[0][0]}\n\n### Assistant:\n{part[0][1]}{END_OF_TEXT}")


def test_prepare_matches_the_chat_template(sft_dir, tmp_path):
    """The files are the chat template's output concatenated, nothing added or lost."""
    convs = conversations()
    prepare_lima.prepare(convs, tmp_path / "again", val_fraction=0.25)
    train, val = prepare_lima.split(convs, 0.25, 1337)
    for split, part in (("train", train), ("val", val)):
        ids, mask = read_split(tmp_path / "again", split)
        encoded = [encode_conversation(c) for c in part]
        assert ids.tolist() == [t for e in encoded for t in e[0]]
        assert mask.tolist() == [m for e in encoded for m in e[1]]


@pytest.mark.parametrize("line,why", [
    ('{"conversations": ["hi", "hello"', "not valid JSON"),
    ('{"messages": ["hi", "hello"]}', "expected {\"conversations\""),
    ('{"conversations": ["hi", 3]}', "non-empty list of strings"),
    ('{"conversations": []}', "non-empty list of strings"),
])
def test_a_malformed_line_is_named_by_its_number(tmp_path, line, why):
    good = json.dumps({"conversations": ["hi", "hello"]})
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(f"{good}\n\n{good}\n{line}\n{good}\n")
    with pytest.raises(UserError) as error:
        prepare_lima.read_jsonl(str(jsonl))
    assert f"{jsonl} line 4: " in str(error.value) and why in str(error.value)


def test_no_hub_is_one_line_that_says_how_to_pass_a_local_file(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "data/sft-lima/prepare.py", f"--out_dir={tmp_path / 'out'}"],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.startswith("error: could not load LIMA from the Hugging Face hub")
    assert "--input=train.jsonl" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


# --- the loss mask -----------------------------------------------------------------------------
def test_masked_positions_contribute_nothing_to_the_gradient(sft_dir):
    torch.manual_seed(0)
    model = build_model("reflow", Config(**TINY).model_config())
    ids, mask = read_split(sft_dir, "train")
    T = 32
    x = torch.stack([ids[i : i + T] for i in (0, 40)])  # (2, T), windows cutting through turns
    raw_y = torch.stack([ids[i + 1 : i + T + 1] for i in (0, 40)])
    y_mask = torch.stack([mask[i + 1 : i + T + 1] for i in (0, 40)])
    assert 0 < y_mask.sum() < y_mask.numel()

    def gradients(targets):
        model.zero_grad()
        logits, loss = model(x, targets)
        logits.retain_grad()
        loss.backward()
        return logits.grad, {n: p.grad.clone() for n, p in model.named_parameters()}

    logit_grad, grads = gradients(masked_targets(raw_y, y_mask))
    # Exactly zero gradient flows out of a masked position's prediction; every trained one counts.
    assert (logit_grad[y_mask == 0] == 0).all()
    assert (logit_grad[y_mask == 1].abs().sum(-1) > 0).all()

    # Changing the target token at masked positions (user text, headers) changes nothing.
    other_y = torch.where(y_mask == 1, raw_y, torch.randint_like(raw_y, 50257))
    _, other_grads = gradients(masked_targets(other_y, y_mask))
    assert all(torch.equal(grads[n], other_grads[n]) for n in grads)

    # The loss is the mean over assistant tokens alone; without the mask the gradient differs.
    logits, loss = model(x, masked_targets(raw_y, y_mask))
    per_token = F.cross_entropy(logits.flatten(0, 1), raw_y.flatten(), reduction="none")
    assert torch.allclose(loss, per_token[y_mask.flatten() == 1].mean())
    _, unmasked_grads = gradients(raw_y)
    assert not torch.allclose(grads["recipe"], unmasked_grads["recipe"])


# --- fine-tuning with train.py -----------------------------------------------------------------
# A tiny reflow every Config can express (model_args come from Config.model_config()).
TINY = {"model": "reflow", "n_layer": 2, "n_head": 4, "n_embd": 32, "n_signals": 16, "block_size": 32,
        "vocab_size": 50304, "dropout": 0.0, "bias": False}


@torch.no_grad()
def sft_losses(model, ids, mask) -> tuple[float, float]:
    """Mean cross-entropy over (assistant tokens, user tokens no answer contains), on windows of
    block_size that tile the split."""
    T = model.config.block_size
    losses, targets, masks = [], [], []
    for start in range(0, len(ids) - 1, T):
        chunk = ids[start : start + T + 1]
        x, y = chunk[:-1], chunk[1:]
        logits, _ = model(x[None])
        losses.append(F.cross_entropy(logits[0], y, reduction="none"))
        targets.append(y)
        masks.append(mask[start + 1 : start + T + 1])
    loss, y, m = torch.cat(losses), torch.cat(targets), torch.cat(masks)
    user_only = (m == 0) & ~torch.isin(y, ids[mask == 1])
    return loss[m == 1].mean().item(), loss[user_only].mean().item()


@pytest.mark.skipif(not (REPO / "train.py").exists(), reason="train.py is not in this tree yet")
def test_a_short_fine_tune_lowers_the_loss_on_assistant_tokens(sft_dir, tmp_path):
    config_file = "config/finetune_shakespeare_reflow.py"
    cfg = load_config(config_file, {k: str(v) for k, v in TINY.items()})
    torch.manual_seed(0)
    pretrained = build_model(cfg.model, cfg.model_config())
    pretrained_ckpt = tmp_path / "pretrained" / "ckpt.pt"
    save_checkpoint({"model": pretrained.state_dict(), "optimizer": {}, "iter_num": 5000,
                     "model_args": dataclasses.asdict(cfg.model_config()), "best_val_loss": 9.0,
                     "config": cfg.to_dict()}, pretrained_ckpt)

    max_iters = 15
    overrides = {**TINY, "init_from": pretrained_ckpt, "data_dir": tmp_path, "dataset": "sft-lima",
                 "out_dir": tmp_path / "finetuned", "max_iters": max_iters, "eval_interval": max_iters,
                 "eval_iters": 2, "log_interval": 5, "batch_size": 4, "gradient_accumulation_steps": 1,
                 "learning_rate": 1e-2, "decay_lr": False, "always_save_checkpoint": True}
    command = [sys.executable, "train.py", config_file, *(f"--{k}={v}" for k, v in overrides.items())]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]

    finetuned_ckpt = load_checkpoint(tmp_path / "finetuned")
    # the pretrained checkpoint's architecture, and (new checkpoints) its name
    assert finetuned_ckpt["model_args"] == {"model": cfg.model, **dataclasses.asdict(cfg.model_config())}
    assert finetuned_ckpt["iter_num"] <= max_iters  # counted from 0, not resumed from 5000
    finetuned = model_from_checkpoint(finetuned_ckpt).eval()
    pretrained = model_from_checkpoint(load_checkpoint(pretrained_ckpt)).eval()

    ids, mask = read_split(sft_dir, "val")  # held-out conversations
    assistant_before, user_before = sft_losses(pretrained, ids, mask)
    assistant_after, user_after = sft_losses(finetuned, ids, mask)
    assert assistant_after < assistant_before - 1.0, (assistant_before, assistant_after)
    # Trained on answers, not on user text: the answers' loss falls further than the user text's
    # (without the mask, user text repeating "zebra quilt" is the easiest thing to learn).
    assert assistant_before - assistant_after > user_before - user_after, (user_before, user_after)
