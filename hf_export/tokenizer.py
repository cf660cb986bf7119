"""GPT-2's tokenizer as Hugging Face files (vocab.json, merges.txt), built offline from data/gpt2.tiktoken.

tiktoken stores each token as raw bytes with its rank; transformers' GPT2Tokenizer wants the same
vocabulary written through GPT-2's byte-to-unicode map, plus the ordered list of merges. The merges
are not stored anywhere offline, so they are recovered from the ranks: the token of rank r was made
by merging two tokens of lower rank, and running BPE on its bytes with only merges below r leaves
exactly those two. GPT-2's merge i made the token of rank 256 + i, so sorting by rank gives
merges.txt in its original order.
"""

import json

from tiktoken.load import load_tiktoken_bpe

from core.tokenizer import END_OF_TEXT, END_OF_TEXT_ID, RANKS_FILE


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the rest (control bytes, space, ...) are shifted to
    code points 256 and up, so every token is a string without whitespace or control characters.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def merge_that_made(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two lower-ranked tokens whose merge produced `token` (a token of two or more bytes)."""
    max_rank = ranks[token]
    parts = [bytes([b]) for b in token]
    while True:
        best = None  # (rank, position) of the lowest-ranked merge still allowed
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    assert len(parts) == 2, f"token {token!r} is not the merge of two lower-ranked tokens"
    return parts[0], parts[1]


def tokenizer_files(model_max_length: int) -> dict[str, str]:
    """File name -> text for a transformers tokenizer directory equal to our GPT-2 tokenizer."""
    ranks = load_tiktoken_bpe(str(RANKS_FILE))  # token bytes -> rank (= token id)
    to_unicode = bytes_to_unicode()
    spell = lambda token: "".join(to_unicode[b] for b in token)

    vocab = {spell(token): rank for token, rank in ranks.items()}
    vocab[END_OF_TEXT] = END_OF_TEXT_ID
    merged = sorted((rank, token) for token, rank in ranks.items() if len(token) > 1)
    merges = ["#version: 0.2"]
    for _, token in merged:
        left, right = merge_that_made(token, ranks)
        merges.append(f"{spell(left)} {spell(right)}")

    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model_max_length,
        "bos_token": END_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "add_prefix_space": False,  # like tiktoken: "Hello" and " Hello" are different tokens
        "add_bos_token": False,
        "errors": "replace",
    }
    special = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT}
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "\n".join(merges) + "\n",
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(special, indent=2) + "\n",
    }
