"""GPT-2's byte-level BPE through tiktoken, built offline from the ranks the repo ships, and the
`Tokenizer` that maps a model's token ids to GPT-2's.

`tiktoken.get_encoding("gpt2")` downloads its files on first use; building the same encoding from
`data/gpt2.tiktoken` gives identical ids with no network ("Hello world" -> [15496, 995]).

The module functions (`encode`, `decode`) speak GPT-2 ids, which is what the data files hold. A model
speaks its own ids: GPT-2's (vocab='gpt2'), or a dense range standing for the GPT-2 ids its corpus
holds (vocab='corpus', docs/vocab.md). `Tokenizer` is the one place that maps between the two.
"""

import codecs
import functools
from pathlib import Path

import numpy as np
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from core.errors import UserError
from core.i18n import N_

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


def _bytes_as_hex(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end


# GPT-2 splits an emoji or a CJK character across byte tokens: a token's stray bytes read as `<0xF0>`.
codecs.register_error("tokenizer_hex_bytes", _bytes_as_hex)


def encode(text: str) -> list[int]:
    """Encode ordinary text; `<|endoftext|>` in the text is allowed and becomes its special id."""
    return get_tokenizer().encode(text, allowed_special={END_OF_TEXT})


def encode_ordinary(text: str) -> list[int]:
    """Encode text that must never contain control tokens (user content): a literal
    `<|endoftext|>` is spelled out as ordinary text."""
    return get_tokenizer().encode_ordinary(text)


def decode(ids) -> str:
    return get_tokenizer().decode(list(ids))


class Tokenizer:
    """GPT-2's BPE over one model's token ids.

    With `gpt2_ids` None the model's ids are GPT-2's own: id i is GPT-2 token i, for every i below
    min(vocab_size, GPT2_VOCAB_SIZE). With `gpt2_ids` (sorted, distinct GPT-2 ids; vocab='corpus')
    model id i is GPT-2 token gpt2_ids[i]. Either way `n_vocab` ids are real tokens; the model's rows
    from n_vocab to vocab_size are padding (a multiple of 64 for fast matmuls) and stand for no text.
    A GPT-2 token outside the model's ids is refused in one line, never mapped to something else.
    """

    def __init__(self, vocab_size: int, gpt2_ids=None):
        self.remapped = gpt2_ids is not None
        if self.remapped:
            self.gpt2_ids = np.asarray(gpt2_ids, dtype=np.int64)
            assert self.gpt2_ids.ndim == 1 and len(self.gpt2_ids) <= vocab_size  # checked at loading
        else:
            self.gpt2_ids = np.arange(min(vocab_size, GPT2_VOCAB_SIZE), dtype=np.int64)
        self.n_vocab = len(self.gpt2_ids)
        self.vocab_size = vocab_size
        # GPT-2 id -> model id, -1 where the model has none: remapping a batch is one indexing.
        self.model_id_of = np.full(GPT2_VOCAB_SIZE, -1, dtype=np.int64)
        self.model_id_of[self.gpt2_ids] = np.arange(self.n_vocab)

    def from_gpt2(self, gpt2_ids, what: str = N_("the text"), fix: str = N_("use other words")) -> np.ndarray:
        """Model ids for GPT-2 ids; a GPT-2 id the model lacks is a UserError naming the token, where
        it came from (`what`) and what to do (`fix`)."""
        gpt2_ids = np.asarray(gpt2_ids, dtype=np.int64)
        is_gpt2 = (gpt2_ids >= 0) & (gpt2_ids < GPT2_VOCAB_SIZE)
        ids = np.where(is_gpt2, self.model_id_of[np.where(is_gpt2, gpt2_ids, 0)], -1)
        if (ids < 0).any():
            missing = int(gpt2_ids[np.argmax(ids < 0)])
            fields = dict(what=what, token=missing, vocabulary=self.describe(), fix=fix)
            if missing < GPT2_VOCAB_SIZE:
                raise UserError(N_("{what}: {text} is GPT-2 token {token}, outside this model's vocabulary "
                                   "({vocabulary}); {fix}"), text=repr(decode([missing])), **fields)
            raise UserError(N_("{what}: token {token} is no GPT-2 token, outside this model's vocabulary "
                               "({vocabulary}); {fix}"), **fields)
        return ids

    def to_gpt2(self, ids) -> np.ndarray:
        """GPT-2 ids for model ids (all below n_vocab)."""
        return self.gpt2_ids[np.asarray(ids, dtype=np.int64)]

    def encode(self, text: str, what: str = N_("the text")) -> list[int]:
        """Model ids of `text`, encoded like the module's `encode`."""
        return self.from_gpt2(encode(text), what).tolist()

    def decode(self, ids) -> str:
        """The text of model ids; padding ids (n_vocab and up) stand for no text and are left out."""
        real = [i for i in (int(i) for i in ids) if i < self.n_vocab]
        return decode(self.to_gpt2(real).tolist())

    def piece(self, token: int) -> str:
        """The text of one model id, its bytes that are not whole UTF-8 characters as `<0xF0>` (never
        U+FFFD); a padding row (n_vocab and up) as `<pad ID>`."""
        token = int(token)
        if token >= self.n_vocab:
            return f"<pad {token}>"  # padding rows stand for no text
        text = get_tokenizer().decode_single_token_bytes(int(self.gpt2_ids[token]))
        return text.decode("utf-8", errors="tokenizer_hex_bytes")

    def label(self, token: int) -> str:
        """A token as readable text for tables, pages and plots: its piece, newline as \\n, a leading
        space as '·'."""
        text = self.piece(token).replace("\n", "\\n")
        return "·" + text[1:] if text.startswith(" ") else text

    def word(self, token: int) -> str:
        """What to type to get `token`: its text when that encodes back to exactly it, else '#ID' (a
        byte of an emoji, a padding row)."""
        token = int(token)
        if token < self.n_vocab:
            text = self.piece(token)
            if encode(text) == [int(self.gpt2_ids[token])]:
                return text
        return f"#{token}"

    @property
    def end_of_text_id(self) -> int | None:
        """The model id of <|endoftext|>, or None when the model has none (a toy vocabulary)."""
        model_id = int(self.model_id_of[END_OF_TEXT_ID])
        return model_id if model_id >= 0 else None

    def describe(self) -> str:
        if self.remapped:
            return N_("the {count:,} GPT-2 tokens of its training corpus, vocab='corpus'").format(
                count=self.n_vocab)
        return N_("the first {count:,} GPT-2 ids").format(count=self.n_vocab)
