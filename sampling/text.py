"""Text sampling from a checkpoint, for sample.py (and tests): prompts from text or files, a trained
model loaded for generation, plain and chat replies. The sampling rule itself (top-k, temperature) is
`sample_next` in models/transformer.py, beside the KV-cache loop that calls it."""

import sys
from pathlib import Path

import torch

from core.chat import chat_prompt
from core.checkpoint import checkpoint_path, load_checkpoint, model_from_checkpoint, tokenizer_of
from core.config import Config
from core.errors import UserError
from core.hardware import autocast, resolve_device, resolve_dtype
from core.memory_plan import check_sampling_fits
from core.tokenizer import Tokenizer
from models import Transformer

FILE_PREFIX = "FILE:"  # --start=FILE:path reads the prompt from a file, as in nanoGPT


def read_prompt(start: str) -> str:
    """The prompt text: `start` itself, or the contents of the file named by `FILE:path`."""
    if start.startswith(FILE_PREFIX):
        path = Path(start[len(FILE_PREFIX):])
        if not path.is_file():
            raise UserError(f"prompt file {path} not found; write --start=FILE:path/to/prompt.txt")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"prompt file {path} is not UTF-8 text")
        if not text:
            raise UserError(f"prompt file {path} is empty; put some text in it")
        return text
    if not start:
        raise UserError('the prompt is empty; give some text with --start="..." or a file with '
                        "--start=FILE:path")
    return start


def crop_to_context(ids: list[int], block_size: int) -> list[int]:
    """The last block_size ids: the model cannot see further back. Says so on stderr when it crops."""
    if len(ids) > block_size:
        print(f"notice: the prompt is {len(ids):,} tokens, longer than the model's context of "
              f"{block_size}; keeping its last {block_size} tokens", file=sys.stderr)
        return ids[-block_size:]
    return ids


def check_sampling_keys(cfg: Config) -> None:
    """What sample.py needs beyond the limits core/config.py declares for train.py and sample.py
    alike (num_samples, temperature, top_k): new tokens to generate, which train.py's closing
    sample may skip with max_new_tokens = 0."""
    if cfg.max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be at least 1 to sample, got {cfg.max_new_tokens}")


def load_for_sampling(cfg: Config, block_size_given: bool) -> tuple[Transformer, Tokenizer, str, str]:
    """The model saved in cfg.out_dir (a run directory or a .pt file), in eval mode on the chosen
    device, with its context window; returns (model, its tokenizer, device, dtype).

    The architecture comes from the checkpoint. `block_size`, when the user sets it, may shrink the
    context window (less memory, faster recomputation) but never grow it past what the model was
    trained with: positions beyond that were never learned.
    """
    checkpoint = load_checkpoint(cfg.out_dir)
    model = model_from_checkpoint(checkpoint)
    trained = model.config.block_size
    if block_size_given:
        if cfg.block_size > trained:
            raise UserError(f"block_size {cfg.block_size} is larger than the {trained} this model "
                            f"({checkpoint_path(cfg.out_dir)}) was trained with; use "
                            f"--block_size={trained} or less")
        model.config.block_size = cfg.block_size  # a shorter window over the same position tables
    device = resolve_device(cfg.device)  # load_config has checked that this machine has it
    dtype = resolve_dtype(cfg.dtype, device)
    check_sampling_fits(model, cfg.num_samples, cfg.max_new_tokens, device, dtype)
    model = model.to(device)
    return model.eval(), tokenizer_of(checkpoint), device, dtype


def generate_ids(model: Transformer, tokenizer: Tokenizer, prompts: list[list[int]], cfg: Config, device: str,
                 dtype: str, generator: torch.Generator, stop_token: int | None = None) -> list[list[int]]:
    """New ids (without the prompt) for each prompt, all of the same length, in one batch; the
    prompts are the model's ids (its Tokenizer has refused any token the model lacks)."""
    idx = torch.tensor(prompts, dtype=torch.long, device=device)
    with autocast(device, dtype):
        out = model.generate(idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                             use_cache=cfg.use_cache, generator=generator, stop_token=stop_token,
                             valid_vocab_size=tokenizer.n_vocab)
    return out[:, idx.size(1):].tolist()


def until_end_of_text(ids: list[int], end_of_text: int) -> list[int]:
    """A chat reply ends at the first <|endoftext|>, which the chat template trains it to emit."""
    return ids[: ids.index(end_of_text)] if end_of_text in ids else ids


def sample_text(model, tokenizer: Tokenizer, cfg: Config, device: str, dtype: str,
                generator: torch.Generator) -> list[str]:
    """cfg.num_samples continuations of the prompt cfg.start, each printed as prompt + new text."""
    prompt = tokenizer.encode(read_prompt(cfg.start), what="the prompt")
    ids = crop_to_context(prompt, model.config.block_size)
    new = generate_ids(model, tokenizer, [ids] * cfg.num_samples, cfg, device, dtype, generator)
    return [tokenizer.decode(ids + row) for row in new]


def chat_reply(model, tokenizer: Tokenizer, history: list[str], message: str, cfg: Config, device: str,
               dtype: str, generator: torch.Generator) -> list[str]:
    """cfg.num_samples assistant replies to `message` after `history` (alternating user/assistant
    turns), each prompt wrapped in the chat template of core/chat.py."""
    prompt = tokenizer.from_gpt2(chat_prompt(history, message), what="the chat").tolist()
    ids = crop_to_context(prompt, model.config.block_size)
    end = tokenizer.end_of_text_id  # in the prompt, so the model has it
    new = generate_ids(model, tokenizer, [ids] * cfg.num_samples, cfg, device, dtype, generator,
                       stop_token=end)
    return [tokenizer.decode(until_end_of_text(row, end)).strip() for row in new]
