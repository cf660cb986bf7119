"""The model registry: config names (with hyphens) to classes (in files with underscores)."""

from models.gpt2 import GPT2
from models.gpt2_new import GPT2New
from models.layers import ModelConfig
from models.reflow import Reflow
from models.reflow_lite import ReflowLite
from models.reflow_topk import ReflowTopK
from models.transformer import Transformer

MODELS: dict[str, type[Transformer]] = {
    "gpt2": GPT2,
    "gpt2-new": GPT2New,
    "reflow": Reflow,
    "reflow-topk": ReflowTopK,
    "reflow-lite": ReflowLite,
}


def build_model(name: str, config: ModelConfig) -> Transformer:
    """A freshly initialized model of the named architecture."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return MODELS[name](config)


__all__ = ["MODELS", "ModelConfig", "Transformer", "build_model"]
