# GPT-2 baseline: learned positions, LayerNorm, GELU MLP, tied embedding and head.
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_gpt2.py
# 505.62M parameters (derived in config/README.md; python check.py config/train_gpt2.py).
# Planned for 4 x t4: 10.50 GiB per GPU of 15.00 (was 19.65, more than a T4 has): shard,
#   activation checkpointing and chunked loss (config/openwebtext_common.py); same micro-batch and tokens per step.
#   python check.py config/train_gpt2.py --memory --gpu=t4 --world_size=4
from config.openwebtext_common import *  # noqa: F403  (data, batch and schedule)

out_dir = "out/gpt2"
wandb_run_name = "train_gpt2"
model = "gpt2"
n_layer = 36

