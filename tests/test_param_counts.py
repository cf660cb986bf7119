"""The seven published configs give exactly the published parameter counts."""

import pytest
import torch

from check import format_millions
from core.config import load_config
from models import build_model

PUBLISHED = {
    "train_gpt2.py": ("gpt2", 36, "505.62M"),
    "train_gpt2_new.py": ("gpt2-new", 36, "514.01M"),
    "train_reflow_1.py": ("reflow", 32, "463.67M"),
    "train_reflow_1_big.py": ("reflow", 36, "515.06M"),
    "train_reflow_1_topk_big.py": ("reflow-topk", 36, "515.06M"),
    "train_reflow_1_lite.py": ("reflow-lite", 32, "413.34M"),
    "train_reflow_1_small.py": ("reflow", 6, "46.47M"),
}


@pytest.mark.parametrize("config_file", sorted(PUBLISHED))
def test_published_parameter_count(config_file):
    model_name, n_layer, params = PUBLISHED[config_file]
    cfg = load_config(f"config/{config_file}")
    assert (cfg.model, cfg.n_layer) == (model_name, n_layer)
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.model_config())
    assert format_millions(model.num_params()) == params


def test_shakespeare_configs_share_one_size():
    names = ["gpt2", "gpt2_new", "reflow", "reflow_topk", "reflow_lite"]
    configs = [load_config(f"config/train_shakespeare_{n}.py") for n in names]
    sizes = {(c.n_layer, c.n_embd, c.n_head, c.block_size, c.batch_size, c.max_iters) for c in configs}
    assert len(sizes) == 1
    assert [c.model for c in configs] == ["gpt2", "gpt2-new", "reflow", "reflow-topk", "reflow-lite"]
