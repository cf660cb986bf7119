"""The few places where the explorer touches the models' hook interface (models/transformer.py).

Everything else in the explorer goes through these functions, so a change to how hooks are named or
called is one edit here.
"""

import contextlib

import torch

from models import Transformer


def residual_hook(model: Transformer, layer: int) -> str:
    """The hook point holding the residual stream after `layer` (0-based)."""
    return model.resid_hook(layer)


# Hook functions take the activation first and ignore the hook point the models pass as `hook=`.
def replacing_hook(edit):
    """A hook function that replaces an activation by edit(activation)."""
    return lambda activation, *_, **__: edit(activation)


def recording_hook(store: dict, key: str):
    """A hook function that keeps the activation in store[key] and leaves it unchanged."""
    def record(activation, *_, **__):
        store[key] = activation.detach()
    return record


@contextlib.contextmanager
def hooked(model: Transformer, hooks: dict | None):
    """Run the model with `hooks` ({hook name: hook function}) in place within the block."""
    with model.hooks(hooks or {}):
        yield


def final_hook_name() -> str:
    """The hook point holding the final hidden state, after the last norm: what the readout reads."""
    return "hook_final"


@torch.no_grad()
def residual_states(model: Transformer, idx: torch.Tensor) -> torch.Tensor:
    """(L+1, B, T, C): the residual stream after the embedding and after each layer, without paying
    for the (B, T, V) readout."""
    return torch.stack(model.hidden_states(idx))
