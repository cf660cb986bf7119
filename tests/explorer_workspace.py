"""A loaded explorer over a tiny checkpoint (experiment_workspace's run: 1024-token vocabulary, toy
validation text), for the explorer's function and browser tests."""

from pathlib import Path

from experiment_workspace import make_run

from core.config import load_config
from explorer.state import ExplorerState, load_state


def make_state(root: Path, model_name: str = "reflow", **overrides) -> ExplorerState:
    config_file, _ = make_run(root, model_name)
    return load_state(load_config(str(config_file), {k: str(v) for k, v in overrides.items()}))
