"""The one chat template, used by SFT data preparation and by sample.py's chat mode.

GPT-2's vocabulary has no chat tokens, so turns are marked with plain text headers:

    ### User:
    {user message}

    ### Assistant:
    {assistant message}<|endoftext|>

Loss is taken on assistant tokens only: the assistant's text and the <|endoftext|> that ends it
(so the model learns to stop). Headers and user text are context, masked out. Message text is
encoded as ordinary text: a literal "<|endoftext|>" inside a message is not a control token.
"""

from core.tokenizer import END_OF_TEXT_ID, encode_ordinary

USER_HEADER = "### User:\n"
ASSISTANT_HEADER = "### Assistant:\n"
TURN_SEPARATOR = "\n\n"


def encode_conversation(turns: list[str]) -> tuple[list[int], list[int]]:
    """Token ids and a loss mask (1 = train on this token) for alternating user/assistant turns,
    user first."""
    ids: list[int] = []
    mask: list[int] = []
    for i, text in enumerate(turns):
        if i % 2 == 0:  # user: header, message and the assistant header are all context
            context = encode_ordinary(USER_HEADER + text + TURN_SEPARATOR + ASSISTANT_HEADER)
            ids += context
            mask += [0] * len(context)
        else:
            answer = encode_ordinary(text) + [END_OF_TEXT_ID]
            ids += answer
            mask += [1] * len(answer)
            separator = encode_ordinary(TURN_SEPARATOR)
            ids += separator
            mask += [0] * len(separator)
    return ids, mask


def chat_prompt(history: list[str], user_message: str) -> list[int]:
    """Ids that ask the model for the next assistant turn after `history` (alternating turns)."""
    ids, _ = encode_conversation(history + [user_message])
    return ids
