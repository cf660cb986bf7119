"""GPT-2's byte-level BPE through tiktoken, built offline from the ranks the repo ships.

`tiktoken.get_encoding("gpt2")` downloads its files on first use; building the same encoding from
`data/gpt2.tiktoken` gives identical ids with no network ("Hello world" -> [15496, 995]).
"""

import functools
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe

RANKS_FILE = Path(__file__).resolve().parent.parent / "data" / "gpt2.tiktoken"
END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = 50256
GPT2_VOCAB_SIZE = 50257  # ids the tokenizer produces: 256 bytes, 50,000 merges, <|endoftext|>
# GPT-2's pre-tokenizer split pattern (tiktoken's r50k_pat_str).
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> tiktoken.Encoding:
    """The GPT-2 encoding (GPT2_VOCAB_SIZE ids), identical to tiktoken.get_encoding("gpt2")."""
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(RANKS_FILE)),
        special_tokens={END_OF_TEXT: END_OF_TEXT_ID},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


def encode(text: str) -> list[int]:
    """Encode ordinary text; `<|endoftext|>` in the text is allowed and becomes its special id."""
    return get_tokenizer().encode(text, allowed_special={END_OF_TEXT})


def encode_ordinary(text: str) -> list[int]:
    """Encode text that must never contain control tokens (user content): a literal
    `<|endoftext|>` is spelled out as ordinary text."""
    return get_tokenizer().encode_ordinary(text)


def valid_vocab_size(vocab_size: int) -> int:
    """How many of a model's `vocab_size` rows are ids the tokenizer decodes: the rows past
    GPT2_VOCAB_SIZE pad the vocabulary for fast matmuls and are never drawn (models.sample_next)."""
    return min(vocab_size, GPT2_VOCAB_SIZE)


def decode(ids) -> str:
    return get_tokenizer().decode(list(ids))
