"""LIMA (Zhou et al. 2023, "LIMA: Less Is More for Alignment") as SFT data: token ids and a loss mask.

    python data/sft-lima/prepare.py                       # from the Hugging Face hub
    python data/sft-lima/prepare.py --input=train.jsonl   # from a local file, offline

LIMA is gated on the hub: accept its terms at https://huggingface.co/datasets/GAIR/lima and log in
(`hf auth login`, or HF_TOKEN) first, or download its train.jsonl and pass it with --input. A local
file has the same schema, one conversation per line: {"conversations": [user, assistant, user, ...]}.

Every conversation goes through the one chat template (core/chat.py), and the conversations are
concatenated into the nanoGPT format train.py reads from data/sft-lima/ (or --out_dir):
    train.bin, val.bin              uint16 GPT-2 token ids
    train_mask.bin, val_mask.bin    uint8, same length: 1 = train on this token as a target
so the loss is taken on assistant tokens only (train.py turns targets under a 0 into -1).
LIMA's own test split holds prompts without answers, so val is a held-out slice of train.
"""

import json
import sys
from pathlib import Path

import numpy as np

# Run as a script, this file's folder is on sys.path, not the repository: add it for core/.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from core.atomic_write import replacing  # noqa: E402
from core.chat import encode_conversation  # noqa: E402
from core.errors import ArgumentParser, UserError, exit_on_user_error  # noqa: E402

LIMA_TRAIN = "hf://datasets/GAIR/lima/train.jsonl"
LIMA_PAGE = "https://huggingface.co/datasets/GAIR/lima"


def check_conversation(row, where: str) -> list[str]:
    """The turns of one record, or a UserError saying which record is malformed and why."""
    turns = row.get("conversations") if isinstance(row, dict) else None
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise UserError(f"{where}: expected {{\"conversations\": [user, assistant, ...]}}, "
                        "a non-empty list of strings")
    return turns


def read_jsonl(path: str) -> list[list[str]]:
    """Conversations from a local JSONL file; blank lines are skipped."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"no file at {path}; pass a JSONL file of {{\"conversations\": [...]}} lines")
    conversations = []
    for number, line in enumerate(file.read_bytes().splitlines(), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"{path} line {number}: not UTF-8 text (byte {line[error.start]:#04x} at "
                            f"column {error.start + 1}); save the file as UTF-8")
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {number}: not valid JSON ({error.msg})")
        except (ValueError, RecursionError) as error:  # a 5,000-digit number, arrays nested 100,000 deep
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error).split(";")[0]
            raise UserError(f"{path} line {number}: not a conversation JSON can hold ({reason})")
        conversations.append(check_conversation(row, f"{path} line {number}"))
    if not conversations:
        raise UserError(f"{path} holds no conversations")
    return conversations


def load_from_hub() -> list[list[str]]:
    """LIMA's train split through `datasets`.

    The GAIR/lima repository also ships a loading script, which datasets >= 4 refuses to run, so
    `load_dataset("GAIR/lima")` fails there; reading its train.jsonl with the json builder works
    with every version.
    """
    from datasets import load_dataset

    try:
        rows = load_dataset("json", data_files=LIMA_TRAIN, split="train")
    except Exception as error:  # offline, gated, moved: the user's way out is the same
        first_line = str(error).strip().split("\n")[0]
        reason = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
        raise UserError(f"could not load LIMA from the Hugging Face hub ({reason}); it is gated: accept "
                        f"its terms at {LIMA_PAGE} and log in, or download train.jsonl there and run "
                        "python data/sft-lima/prepare.py --input=train.jsonl")
    return [check_conversation(row, f"{LIMA_TRAIN} line {i + 1}") for i, row in enumerate(rows)]


def split(conversations: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded random split by conversation (never inside one), at least one on each side."""
    order = np.random.default_rng(seed).permutation(len(conversations))
    n_val = min(max(1, round(val_fraction * len(conversations))), len(conversations) - 1)
    val = {int(i) for i in order[:n_val]}
    train = [c for i, c in enumerate(conversations) if i not in val]
    return train, [c for i, c in enumerate(conversations) if i in val]


def encode_all(conversations: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """All conversations through the chat template, concatenated: (ids uint16, mask uint8)."""
    ids, mask = [], []
    for turns in conversations:
        conversation_ids, conversation_mask = encode_conversation(turns)
        ids += conversation_ids
        mask += conversation_mask
    return np.array(ids, dtype=np.uint16), np.array(mask, dtype=np.uint8)


def write_array(array: np.ndarray, path: Path) -> None:
    """Write through a temporary file, so a crash never leaves a truncated .bin behind."""
    with replacing(path) as tmp:
        array.tofile(tmp)


def prepare(conversations: list[list[str]], out_dir: str | Path, val_fraction: float = 0.05,
            seed: int = 1337, source: str = "the conversations") -> dict[str, tuple[int, int, int]]:
    """Write {train,val}.bin and {train,val}_mask.bin to out_dir.
    Returns {split: (conversations, tokens, tokens trained on)}."""
    if len(conversations) < 2:
        raise UserError("need at least 2 conversations: one for train and one for val")
    encoded = {}
    for name, part in zip(("train", "val"), split(conversations, val_fraction, seed), strict=True):
        ids, mask = encode_all(part)
        if not mask.any():  # nothing to learn from: refuse before writing anything
            raise UserError(f"{source}: the {name} split has no assistant turn, so no token to train on; "
                            "each conversation needs [user, assistant, ...] (LIMA's test split has prompts "
                            "only: use train.jsonl)")
        encoded[name] = (len(part), ids, mask)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out_dir {out_dir} is a file, not a folder; choose a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create --out_dir {out_dir} ({error.strerror or error}); choose another")
    counts = {}
    for name, (n_conversations, ids, mask) in encoded.items():
        write_array(ids, out_dir / f"{name}.bin")
        write_array(mask, out_dir / f"{name}_mask.bin")
        counts[name] = (n_conversations, len(ids), int(mask.sum()))
    return counts


@exit_on_user_error
def main(argv: list[str]) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="local JSONL file; default: LIMA from the Hugging Face hub")
    parser.add_argument("--out_dir", default=str(Path(__file__).resolve().parent))
    parser.add_argument("--val_fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        raise UserError(f"--val_fraction must be between 0 and 1, got {args.val_fraction}")
    if args.seed < 0:
        raise UserError(f"--seed must be at least 0, got {args.seed}")
    conversations = read_jsonl(args.input) if args.input else load_from_hub()
    counts = prepare(conversations, args.out_dir, args.val_fraction, args.seed,
                     source=args.input or LIMA_TRAIN)
    for name, (n_conversations, tokens, trained) in counts.items():
        print(f"{name}: {n_conversations:,} conversations, {tokens:,} tokens, {trained:,} of them "
              f"assistant tokens trained on ({trained / tokens:.1%})")
    print(f"wrote train.bin, val.bin, train_mask.bin, val_mask.bin to {args.out_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
