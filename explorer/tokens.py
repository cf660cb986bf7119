"""Tokens as the page writes them: bytes that are not whole UTF-8 characters as `<0xF0>` (GPT-2 splits
an emoji or a CJK character across byte tokens), the vocabulary's padding rows as `<pad ID>`, never '�'."""

import codecs

from core.tokenizer import GPT2_VOCAB_SIZE, get_tokenizer


def _bytes_as_hex(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end


codecs.register_error("explorer_hex_bytes", _bytes_as_hex)


def token_piece(token: int) -> str:
    """The text of one token, its stray bytes as `<0xF0>`."""
    if token >= GPT2_VOCAB_SIZE:
        return f"<pad {token}>"  # the vocabulary's padding rows: no text
    return get_tokenizer().decode_single_token_bytes(token).decode("utf-8", errors="explorer_hex_bytes")


def token_label(token: int) -> str:
    """A token as readable text for tables and headers (leading space shown as '·', newline as '\\n')."""
    text = token_piece(token).replace("\n", "\\n")
    return "·" + text[1:] if text.startswith(" ") else text
