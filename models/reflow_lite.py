"""reFlow-lite: reFlow with grouped-query attention, n_kv_head key/value heads shared by the
n_head query heads. Fewer attention parameters and a smaller key/value cache; nothing else changes.
"""

from models.layers import ModelConfig
from models.reflow import Reflow


class ReflowLite(Reflow):
    def __init__(self, config: ModelConfig):
        assert config.n_kv_head < config.n_head, "reflow-lite needs n_kv_head < n_head"
        super().__init__(config)
