"""Sample from a trained model, nanoGPT style.

    python sample.py config/sample_shakespeare.py
    python sample.py config/sample_reflow_1.py --start="FILE:prompt.txt" --num_samples=1
    python sample.py --out_dir=out/shakespeare_gpt2 --start="ROMEO:" --temperature=0 --max_new_tokens=50
    python sample.py --out_dir=out/sft_lima --chat=True        # chat on stdin; Ctrl-D ends
    python sample.py --out_dir=out/sft_lima --chat=True --start="Hi"   # one reply

The model comes from `out_dir` (a run directory or a checkpoint file), loaded as data. Keys:
start (text, or FILE:path), num_samples, max_new_tokens, temperature (0 = greedy), top_k, seed,
device, dtype, block_size (may shrink the context, never grow it), chat, use_cache (False
recomputes the whole context at every step: slower, for checking the cache).
"""

import dataclasses
import sys

import torch

from core.config import load_config, parse_args, read_config_file
from core.errors import exit_on_user_error
from sampling.text import chat_reply, check_sampling_keys, load_for_sampling, read_prompt, sample_text

SEPARATOR = "---------------"


@exit_on_user_error
def main(argv: list[str]) -> None:
    config_file, overrides = parse_args(argv)
    cfg = load_config(config_file, overrides)
    given = set(overrides) | (set(read_config_file(config_file)) if config_file else set())
    check_sampling_keys(cfg)
    model, tokenizer, device, dtype = load_for_sampling(cfg, block_size_given="block_size" in given)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    if not cfg.chat:
        for text in sample_text(model, tokenizer, cfg, device, dtype, generator):
            print(text)
            print(SEPARATOR, flush=True)
    elif "start" in overrides:  # --start on the command line: one chat turn, it is the message
        for reply in chat_reply(model, tokenizer, [], read_prompt(cfg.start), cfg, device, dtype, generator):
            print(reply)
            print(SEPARATOR, flush=True)
    else:
        chat_loop(model, tokenizer, dataclasses.replace(cfg, num_samples=1), device, dtype, generator)


def chat_loop(model, tokenizer, cfg, device, dtype, generator) -> None:
    """Read a message per line from stdin, answer it with the conversation so far as context;
    end of input (Ctrl-D) or Ctrl-C ends the chat."""
    print(f"chatting with {cfg.out_dir}; end with Ctrl-D", file=sys.stderr)
    prompt = "you> " if sys.stdin.isatty() else ""  # piped input needs no prompt in the output
    history: list[str] = []
    while True:
        try:
            message = input(prompt).strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        if not message:
            continue
        reply = chat_reply(model, tokenizer, history, message, cfg, device, dtype, generator)[0]
        print(f"assistant> {reply}", flush=True)
        history += [message, reply]


if __name__ == "__main__":
    main(sys.argv[1:])
