"""Tokenize OpenWebText into train.bin / val.bin (nanoGPT's format), for the full-scale configs.

    python data/openwebtext/prepare.py [--num_proc=8]

Downloads OpenWebText through `datasets` (about 54 GB of cache on first use), holds out 0.05% of
the documents as val, encodes each document with GPT-2's BPE plus <|endoftext|> in `num_proc`
processes, and writes every token into one memmapped uint16 file per split: train.bin about
9.0B tokens (17 GB), val.bin about 4.4M tokens (8.5 MB), as in nanoGPT.

The steps are functions (`split_documents`, `tokenize`, `write_split`) so that a test runs them
end to end on a few local text files loaded with `load_dataset("text", data_files=...)`.
"""

import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script: make the repo's core/ importable
from core.atomic_write import replacing  # noqa: E402
from core.errors import UserError, exit_on_user_error  # noqa: E402
from core.tokenizer import END_OF_TEXT_ID, get_tokenizer  # noqa: E402

VAL_FRACTION = 0.0005  # nanoGPT's: about 4,000 documents
SPLIT_SEED = 2357
WRITE_SHARDS = 1024  # the split is copied into the memmap in this many contiguous pieces


def load_openwebtext(num_proc: int):
    """OpenWebText's one split, from the hub or the local cache; a failed download is one line."""
    import datasets

    datasets.logging.set_verbosity_error()  # the retries are summarized by our one line below
    try:
        return datasets.load_dataset("openwebtext", num_proc=num_proc)["train"]
    except ConnectionError as error:
        raise UserError(f"cannot reach the Hugging Face hub to download openwebtext ({error}); "
                        "check the network connection and retry")


def split_documents(documents, val_fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED):
    """{'train': ..., 'val': ...}: a seeded random hold-out of whole documents."""
    split = documents.train_test_split(test_size=val_fraction, seed=seed, shuffle=True)
    return {"train": split["train"], "val": split["test"]}


def encode_document(example: dict) -> dict:
    """One document's ids, ending with <|endoftext|> so documents stay apart in the stream."""
    ids = get_tokenizer().encode_ordinary(example["text"]) + [END_OF_TEXT_ID]
    return {"ids": ids, "len": len(ids)}


def tokenize(splits: dict, num_proc: int) -> dict:
    return {
        name: documents.map(encode_document, remove_columns=documents.column_names, num_proc=num_proc,
                            desc=f"tokenizing {name}")
        for name, documents in splits.items()
    }


def write_split(tokenized, path: Path) -> int:
    """Concatenate every document's ids into one uint16 memmap at `path`; returns the token count.

    Written under a temporary name and renamed when whole, so an interrupted run leaves no
    half-written file that train.py would take for data."""
    total = int(np.sum(tokenized["len"], dtype=np.uint64))
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:  # reserve the space first: a full disk fails here, not as SIGBUS mid-copy
            os.posix_fallocate(f.fileno(), 0, total * np.dtype(np.uint16).itemsize)
        tokens = np.memmap(tmp, dtype=np.uint16, mode="r+", shape=(total,))
        position = 0
        shards = min(WRITE_SHARDS, len(tokenized))
        for index in tqdm(range(shards), desc=f"writing {path.name}"):
            shard = tokenized.shard(num_shards=shards, index=index, contiguous=True).with_format("numpy")
            ids = np.concatenate(shard["ids"])
            tokens[position : position + len(ids)] = ids
            position += len(ids)
        tokens.flush()
        del tokens
    return total


def prepare(documents, folder: Path, num_proc: int, val_fraction: float = VAL_FRACTION) -> dict[str, int]:
    """Split, tokenize and write `documents` (a datasets.Dataset with a 'text' column) to folder."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenized = tokenize(split_documents(documents, val_fraction), num_proc)
    counts = {name: write_split(split, folder / f"{name}.bin") for name, split in tokenized.items()}
    print(", ".join(f"{name}.bin: {count:,} tokens" for name, count in counts.items()))
    return counts


@exit_on_user_error
def main(argv: list[str]) -> None:
    num_proc = 8
    for arg in argv:
        value = arg.removeprefix("--num_proc=")
        if value == arg or not value.isdigit() or int(value) < 1:
            raise UserError(f"unexpected argument {arg!r}; usage: python data/openwebtext/prepare.py "
                            "[--num_proc=N] (N a positive integer)")
        num_proc = int(value)
    print(f"loading openwebtext with {num_proc} processes (about 54 GB downloaded on first use)")
    prepare(load_openwebtext(num_proc), HERE, num_proc)


if __name__ == "__main__":
    main(sys.argv[1:])
