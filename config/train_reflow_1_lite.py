# reFlow-lite: reFlow with grouped-query attention, 4 key/value heads for 16 query heads.
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1_lite.py
# 413.34M parameters (derived in config/README.md; python check.py config/train_reflow_1_lite.py).
# Planned for 4 x t4: 9.03 GiB per GPU of 15.00 (was 17.81, more than a T4 has): shard,
#   activation checkpointing and chunked loss (config/openwebtext_common.py); same micro-batch and tokens per step.
#   python check.py config/train_reflow_1_lite.py --memory --gpu=t4 --world_size=4
from config.openwebtext_common import *  # noqa: F403  (data, batch and schedule)

out_dir = "out/reflow_1_lite"
wandb_run_name = "train_reflow_1_lite"
model = "reflow-lite"
n_layer = 32
n_signals = 1024
n_kv_head = 4
