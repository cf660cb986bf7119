"""Data preparation (OpenWebText's path on local files) and batches (loss masks, sampling)."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from train_fixtures import ONE_THREAD_ENV, REPO, VOCAB, write_dataset

from core.errors import UserError
from core.tokenizer import END_OF_TEXT, decode
from data.openwebtext import prepare as openwebtext
from training.batches import Batches, TokenSplit

DOCUMENTS = [f"Document {i}: " + " ".join(["the quick brown fox"] * (i + 1)) + f"\nsecond line {i}."
             for i in range(8)]


def test_openwebtext_prepare_on_local_files(tmp_path):
    """The same functions as the full run: datasets loading, a seeded document split, tokenizing
    in 2 processes, memmapped writing; every document comes back whole, in exactly one split."""
    import datasets

    files = []
    for i, text in enumerate(DOCUMENTS):
        files.append(tmp_path / f"doc{i}.txt")
        files[-1].write_text(text)
    documents = datasets.load_dataset("text", data_files=[str(f) for f in files], sample_by="document",
                                      split="train", cache_dir=str(tmp_path / "cache"))
    counts = openwebtext.prepare(documents, tmp_path / "out", num_proc=2, val_fraction=0.25)
    train = np.fromfile(tmp_path / "out" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tmp_path / "out" / "val.bin", dtype=np.uint16)
    assert counts == {"train": len(train), "val": len(val)}
    train_docs = decode(train.tolist()).split(END_OF_TEXT)
    val_docs = decode(val.tolist()).split(END_OF_TEXT)
    assert train_docs[-1] == val_docs[-1] == ""  # each document ends with <|endoftext|>
    assert len(val_docs) - 1 == 2 and len(train_docs) - 1 == 6
    assert sorted(train_docs[:-1] + val_docs[:-1]) == sorted(DOCUMENTS)
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_openwebtext_without_the_hub_is_one_line(tmp_path):
    env = {**ONE_THREAD_ENV, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, str(REPO / "data/openwebtext/prepare.py"), "--num_proc=1"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot reach the Hugging Face hub to download openwebtext")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (REPO / "data/openwebtext/train.bin.tmp").exists()


def test_mask_turns_targets_into_minus_one(tmp_path):
    folder = write_dataset(tmp_path, mask=True)
    split = TokenSplit(folder, "train", block_size=16)
    offsets = [0, 5, 101]
    x, y = split.read(offsets, "cpu")
    tokens = np.fromfile(folder / "train.bin", dtype=np.uint16).astype(np.int64)
    mask = np.fromfile(folder / "train_mask.bin", dtype=np.uint8)
    for row, o in enumerate(offsets):
        assert x[row].tolist() == tokens[o : o + 16].tolist()
        kept = mask[o + 1 : o + 17] == 1
        expected = np.where(kept, tokens[o + 1 : o + 17], -1)
        assert y[row].tolist() == expected.tolist()
        assert 0 < kept.sum() < 16


def test_windows_without_targets_are_redrawn(tmp_path):
    folder = write_dataset(tmp_path)
    mask = np.zeros(4000, dtype=np.uint8)
    mask[::100] = 1  # one token in 100 is trained on: most 16-token windows would have none
    mask.tofile(folder / "train_mask.bin")
    batches = Batches(folder, block_size=16, batch_size=8, seed=0)
    (_, y), = batches.train_micro_batches(0, 1, rank=0, world_size=1, device="cpu")
    assert ((y != -1).sum(dim=1) >= 1).all()
    np.zeros(4000, dtype=np.uint8).tofile(folder / "train_mask.bin")
    with pytest.raises(UserError, match="marks \\(almost\\) no tokens as trained on"):
        batches.train_micro_batches(0, 1, rank=0, world_size=1, device="cpu")


def test_batches_depend_only_on_seed_and_step(tmp_path):
    folder = write_dataset(tmp_path)
    one = Batches(folder, block_size=16, batch_size=4, seed=1).train_micro_batches(3, 2, 0, 1, "cpu")
    two = Batches(folder, block_size=16, batch_size=4, seed=1).train_micro_batches(3, 2, 0, 1, "cpu")
    other_seed = Batches(folder, block_size=16, batch_size=4, seed=2).train_micro_batches(3, 2, 0, 1, "cpu")
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, two, strict=True))
    assert not torch.equal(one[0][0], other_seed[0][0])
    assert one[0][0].max() < VOCAB


def test_bad_data_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"no train data at .*nothing/train.bin; prepare it with: "
                                        r"python data/nothing/prepare.py"):
        TokenSplit(tmp_path / "nothing", "train", block_size=16)
    folder = write_dataset(tmp_path, train_tokens=10)
    with pytest.raises(UserError, match="holds 10 tokens, too few for one window of block_size 16"):
        TokenSplit(folder, "train", block_size=16)
    np.ones(3, dtype=np.uint8).tofile(folder / "val_mask.bin")
    with pytest.raises(UserError, match="has 3 bytes but .* has 500 tokens"):
        TokenSplit(folder, "val", block_size=16)
