"""Tokenize the embedded Shakespeare corpus into train.bin / val.bin (nanoGPT's format).

    python data/shakespeare/prepare.py

input.txt (5 MB, committed) becomes 1,566,041 GPT-2 tokens; the first 90% are train, the last 10%
val, each a flat array of uint16 ids. train.py runs this itself when the files are missing.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script: make the repo's core/ importable
from core.atomic_write import replacing  # noqa: E402
from core.errors import exit_on_user_error  # noqa: E402
from core.tokenizer import encode  # noqa: E402

VAL_FRACTION = 0.1


def write_tokens(ids, path: Path) -> None:
    """Write ids as uint16 (GPT-2's 50257 ids fit), via a temporary name so a crash leaves no half file."""
    with replacing(path) as tmp:
        np.asarray(ids, dtype=np.uint16).tofile(tmp)


def prepare(folder: Path = HERE) -> None:
    """Encode folder/input.txt and write folder/train.bin and folder/val.bin."""
    ids = encode((folder / "input.txt").read_text(encoding="utf-8"))
    split = int(len(ids) * (1 - VAL_FRACTION))
    write_tokens(ids[:split], folder / "train.bin")
    write_tokens(ids[split:], folder / "val.bin")
    print(f"{folder}: {split:,} train tokens, {len(ids) - split:,} val tokens")


@exit_on_user_error
def main() -> None:
    prepare()


if __name__ == "__main__":
    main()
