# reFlow: gpt2-new's backbone with E = W_recipe @ W_basis over 1024 signals.
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1.py
# 463.67M parameters (derived in config/README.md; python check.py config/train_reflow_1.py).
# Planned for 4 x t4: 9.84 GiB per GPU of 15.00 (was 19.48, more than a T4 has): shard,
#   activation checkpointing and chunked loss (config/openwebtext_common.py); same micro-batch and tokens per step.
#   python check.py config/train_reflow_1.py --memory --gpu=t4 --world_size=4
from config.openwebtext_common import *  # noqa: F403  (data, batch and schedule)

out_dir = "out/reflow_1"
wandb_run_name = "train_reflow_1"
model = "reflow"
n_layer = 32
n_signals = 1024
