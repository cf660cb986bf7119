"""Batches from token files: memmapped reading, sampling that depends only on (seed, step), loss masks.

A dataset is a folder `<data_dir>/<dataset>/` holding `train.bin` and `val.bin`: one stream of
uint16 GPT-2 ids each (nanoGPT's format). It may also hold `train_mask.bin` / `val_mask.bin`:
uint8, one byte per token, 1 where the token is trained on as a target (SFT trains on the
assistant's words only). Where the mask is 0 the target becomes -1, which the loss ignores.

Which windows make up a step's global batch is a function of (seed, step) alone: a generator
seeded from the pair draws every offset of the global batch, and each rank reads its slice.
So a run gives the same batches on 1, 2 or 4 processes, and resuming at step k needs only k.

The files always hold GPT-2 ids, whatever the model's vocabulary: a model trained with
vocab='corpus' (docs/vocab.md) reads them through its Tokenizer's lookup table, one indexing per
batch. So one prepared dataset serves every vocabulary, and no second copy of it can go stale.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.tokenizer import END_OF_TEXT_ID, GPT2_VOCAB_SIZE, Tokenizer

# A window whose targets are all masked out teaches nothing (and a micro-batch of them would
# make the mean loss 0/0), so it is redrawn; a mask that keeps failing this is refused.
MAX_REDRAWS = 100
TOKEN_BYTES = np.dtype(np.uint16).itemsize
SCAN_CHUNK = 1 << 24  # tokens per read when a file is checked once at start-up (32 MB of uint16)
VOCAB_MULTIPLE = 64  # vocab='corpus' pads its rows to a multiple of this, as GPT-2's 50257 -> 50304


def seed_for(*parts) -> int:
    """A 63-bit seed fixed by `parts` alone (e.g. seed, step): nothing carries over between steps."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def prepare_command(dataset: str) -> str:
    return f"python data/{dataset}/prepare.py"


class TokenSplit:
    """One split (train or val) of a dataset: its tokens, and its loss mask if there is one.

    The files are memmapped afresh on every read, as nanoGPT does: a long-lived np.memmap keeps
    every page it touched, and over a long run that grows without bound.
    """

    def __init__(self, folder: Path, split: str, block_size: int, tokenizer: Tokenizer | None = None):
        self.tokens_path = folder / f"{split}.bin"
        self.mask_path = folder / f"{split}_mask.bin"
        self.block_size = block_size
        if self.tokens_path.exists() and not self.tokens_path.is_file():
            raise UserError(f"{self.tokens_path} is a folder, not a token file; "
                            f"prepare the data with: {prepare_command(folder.name)}")
        if not self.tokens_path.is_file():
            raise UserError(f"no {split} data at {self.tokens_path}; "
                            f"prepare it with: {prepare_command(folder.name)}")
        size = self.tokens_path.stat().st_size
        if size % TOKEN_BYTES:
            raise UserError(f"{self.tokens_path} has {size} bytes, not a whole number of uint16 tokens: "
                            f"it is truncated or not a token file; prepare it again with: "
                            f"{prepare_command(folder.name)}")
        self.num_tokens = size // TOKEN_BYTES
        if self.num_tokens <= block_size:
            raise UserError(f"{self.tokens_path} holds {self.num_tokens} tokens, too few for one "
                            f"window of block_size {block_size}; lower --block_size or add data")
        self.has_mask = self.mask_path.is_file()
        if self.has_mask and self.mask_path.stat().st_size != self.num_tokens:
            raise UserError(f"{self.mask_path} has {self.mask_path.stat().st_size} bytes but "
                            f"{self.tokens_path} has {self.num_tokens} tokens; prepare them together")
        if self.has_mask and not any(chunk.any() for chunk in chunks(self.mask())):
            raise UserError(f"{self.mask_path} marks no token as trained on (no assistant turns?); "
                            "check how it was prepared")
        self.tokenizer = tokenizer
        if tokenizer is not None:
            self.check_ids(tokenizer)

    def check_ids(self, tokenizer: Tokenizer) -> None:
        """Every id in the file is a token of the model (one read of the file)."""
        largest = max(int(chunk.max()) for chunk in chunks(self.tokens()))
        if largest >= tokenizer.vocab_size and not tokenizer.remapped:
            raise UserError(f"{self.tokens_path} holds token id {largest}, but the model's vocab_size is "
                            f"{tokenizer.vocab_size}; prepare the data with the model's tokenizer or raise "
                            "--vocab_size")
        if tokenizer.remapped:
            if largest >= GPT2_VOCAB_SIZE:
                raise UserError(f"{self.tokens_path} holds token id {largest}, not a GPT-2 token; prepare "
                                f"it again with: {prepare_command(self.tokens_path.parent.name)}")
            for chunk in chunks(self.tokens()):
                unknown = tokenizer.model_id_of[chunk] < 0
                if unknown.any():
                    token = int(chunk[np.argmax(unknown)])
                    raise UserError(f"{self.tokens_path} holds GPT-2 token {token}, which this model's "
                                    f"vocabulary ({tokenizer.describe()}) lacks: it was built from another "
                                    "corpus; train on that corpus, or from scratch with --init_from=scratch")

    def tokens(self) -> np.memmap:
        return np.memmap(self.tokens_path, dtype=np.uint16, mode="r")

    def mask(self) -> np.memmap:
        return np.memmap(self.mask_path, dtype=np.uint8, mode="r")

    def draw_offsets(self, count: int, generator: torch.Generator) -> list[int]:
        """`count` window starts, uniform over the split; with a mask, none whose targets are all 0."""
        high = self.num_tokens - self.block_size
        offsets = torch.randint(high, (count,), generator=generator).tolist()
        if not self.has_mask:
            return offsets
        mask, T = self.mask(), self.block_size
        for _ in range(MAX_REDRAWS):
            empty = [i for i, o in enumerate(offsets) if not mask[o + 1 : o + 1 + T].any()]
            if not empty:
                return offsets
            redrawn = torch.randint(high, (len(empty),), generator=generator).tolist()
            for i, o in zip(empty, redrawn, strict=True):
                offsets[i] = o
        raise UserError(f"{self.mask_path} marks (almost) no tokens as trained on; check how it was prepared")

    def read(self, offsets: list[int], device: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs x and targets y (B, T) int64 for windows starting at `offsets`; masked targets = -1."""
        tokens, T = self.tokens(), self.block_size
        windows = np.stack([tokens[o : o + T + 1] for o in offsets]).astype(np.int64)  # (B, T + 1)
        if self.tokenizer is not None and self.tokenizer.remapped:
            windows = self.tokenizer.model_id_of[windows]  # GPT-2 ids -> the model's dense ids
        x = torch.from_numpy(np.ascontiguousarray(windows[:, :-1]))
        y = torch.from_numpy(np.ascontiguousarray(windows[:, 1:]))
        if self.has_mask:
            mask = self.mask()
            keep = torch.from_numpy(np.stack([mask[o + 1 : o + 1 + T] for o in offsets]).astype(bool))
            y[~keep] = -1
        if device.startswith("cuda"):  # pinned memory lets the copy overlap with compute
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)


def chunks(array: np.memmap):
    """The array in pieces of SCAN_CHUNK, so a scan of a 17 GB file never holds more than one."""
    return (array[start : start + SCAN_CHUNK] for start in range(0, len(array), SCAN_CHUNK))


def corpus_token_ids(folder: Path) -> np.ndarray:
    """The GPT-2 ids vocab='corpus' keeps, sorted: every id in train.bin and in val.bin (so the
    validation text never meets a token the model lacks; a val-only token's row is trained by
    nothing but its weight decay), plus <|endoftext|>, which documents and chat turns end with.
    One read of each file: the data files stay the single source, nothing is cached beside them."""
    seen = np.zeros(GPT2_VOCAB_SIZE, dtype=bool)
    seen[END_OF_TEXT_ID] = True
    for split in ("train", "val"):
        path = folder / f"{split}.bin"
        if not path.is_file():
            raise UserError(f"no {split} data at {path}; prepare it with: {prepare_command(folder.name)}")
        for chunk in chunks(np.memmap(path, dtype=np.uint16, mode="r")):
            counts = np.bincount(chunk, minlength=GPT2_VOCAB_SIZE)
            if len(counts) > GPT2_VOCAB_SIZE:
                raise UserError(f"{path} holds token id {len(counts) - 1}, not a GPT-2 token; vocab='corpus' "
                                f"needs GPT-2 ids: prepare it with: {prepare_command(folder.name)}")
            seen |= counts > 0
    return np.flatnonzero(seen)


def corpus_tokenizer(folder: Path) -> Tokenizer:
    """The Tokenizer of a model trained from scratch with vocab='corpus' on the dataset in `folder`:
    the corpus's GPT-2 ids, its row count padded up to a multiple of VOCAB_MULTIPLE."""
    kept = corpus_token_ids(folder)
    return Tokenizer(-(-len(kept) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE, kept)


class Batches:
    """The batches of one run: the training micro-batches of each step, and fixed eval batches.

    A step's global batch is `micro_steps` micro-batches of `batch_size` windows; with `world_size`
    processes, rank r reads micro-batches r * per_rank .. (r + 1) * per_rank - 1 of it.
    """

    def __init__(self, folder: Path, block_size: int, batch_size: int, seed: int,
                 tokenizer: Tokenizer | None = None):
        """With the model's `tokenizer`, every token id is checked to be one of the model's (one read
        of each file), and batches hold the model's ids."""
        self.splits = {split: TokenSplit(folder, split, block_size, tokenizer) for split in ("train", "val")}
        self.batch_size = batch_size
        self.seed = seed

    def train_micro_batches(self, step: int, micro_steps: int, rank: int, world_size: int,
                            device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's micro-batches of step `step`'s global batch."""
        generator = torch.Generator().manual_seed(seed_for(self.seed, step))
        offsets = self.splits["train"].draw_offsets(micro_steps * self.batch_size, generator)
        per_rank = micro_steps // world_size
        B = self.batch_size
        mine = range(rank * per_rank, (rank + 1) * per_rank)
        return [self.splits["train"].read(offsets[m * B : (m + 1) * B], device) for m in mine]

    def eval_batch(self, split: str, index: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval batch `index` of a split: the same windows at every evaluation, so successive
        estimates differ only by what the model learned."""
        generator = torch.Generator().manual_seed(seed_for(self.seed, "eval", split, index))
        offsets = self.splits[split].draw_offsets(self.batch_size, generator)
        return self.splits[split].read(offsets, device)
