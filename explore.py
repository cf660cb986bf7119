"""Explore a checkpoint in the browser: generation, tokens and recipes, signals, logit lens, interventions.

    python explore.py config/train_shakespeare_reflow.py                 # out_dir/ckpt.pt on 127.0.0.1:7860
    python explore.py config/train_shakespeare_reflow.py --ckpt out/other/ckpt.pt --port 7861
    python explore.py config/train_shakespeare_reflow.py --benchmark     # time start-up and each view
    python explore.py config/train_shakespeare_gpt2_new.py --posthoc=svd  # signals cut from gpt2's embedding
    python explore.py config/train_shakespeare_reflow.py \
        --posthoc=sae:out/shakespeare_reflow/audit_reports/saes/last_layer_512  # an SAE's latents as signals

The page works with no network (no analytics, no external assets, no share link) and listens on
127.0.0.1 unless --host says otherwise. Any --key=value overrides a config key, as in the other scripts.
"""

import argparse
import sys
import time

from core.config import load_config, parse_args
from core.errors import UserError, exit_on_user_error

MAX_PORT = 65535
SAE_PREFIX = "sae:"  # --posthoc=sae:PATH


def split_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The explorer's own flags; the rest (CONFIG and --key=value) is for parse_args."""
    parser = argparse.ArgumentParser(prog="python explore.py", add_help=True)
    parser.add_argument("--ckpt", help="checkpoint file or run directory (default: the config's out_dir)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: the first free from 7860)")
    parser.add_argument("--benchmark", action="store_true", help="time start-up and every view, then exit")
    parser.add_argument("--posthoc", help="svd or dictionary (the config key), or sae:PATH: read the model "
                                          "through the SAE saved in PATH (experiment 15's saes/ folder)")
    flags, rest = parser.parse_known_args(argv)
    flags.sae = None
    if flags.posthoc is not None and flags.posthoc.startswith(SAE_PREFIX):
        flags.sae = flags.posthoc[len(SAE_PREFIX):]
    elif flags.posthoc is not None:  # svd, dictionary, none: the config key, checked there
        rest.append(f"--posthoc={flags.posthoc}")
    return flags, rest


@exit_on_user_error
def main(argv: list[str]) -> None:
    flags, rest = split_args(argv)
    config_file, overrides = parse_args(rest)
    if config_file is None:
        raise UserError("usage: python explore.py CONFIG [--ckpt PATH] [--posthoc=sae:PATH] [--host H] "
                        "[--port P] [--benchmark]")
    if flags.port is not None and not 1 <= flags.port <= MAX_PORT:
        raise UserError(f"--port {flags.port} is not a TCP port; give one from 1 to {MAX_PORT} "
                        "(or leave it out for the first free from 7860)")
    cfg = load_config(config_file, overrides)
    if flags.benchmark:
        from explorer.latency import run_benchmark
        run_benchmark(cfg, flags.ckpt, flags.sae)
        return
    from explorer.app import build_app, launch  # gradio loads only when the page is wanted
    from explorer.state import load_state

    state = load_state(cfg, flags.ckpt, flags.sae)
    page = build_app(state)
    try:
        _, url, _ = launch(page, flags.host, flags.port, block=False)
    except OSError as error:
        raise UserError(f"cannot listen on {flags.host}:{flags.port or 'any port from 7860'} ({error}); "
                        "pass a free --port")
    try:
        print(f"explorer ready for {state.checkpoint}: {url}  (Ctrl-C stops it)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        page.close()
        print("\nstopped", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
