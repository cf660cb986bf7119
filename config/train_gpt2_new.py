# gpt2-new baseline: RoPE, SwiGLU, RMSNorm, tied embedding and head.
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_gpt2_new.py
# 514.01M parameters (derived in config/README.md; python check.py config/train_gpt2_new.py).
# Planned for 4 x t4: 10.67 GiB per GPU of 15.00 (was 21.30, more than a T4 has): shard,
#   activation checkpointing and chunked loss (config/openwebtext_common.py); same micro-batch and tokens per step.
#   python check.py config/train_gpt2_new.py --memory --gpu=t4 --world_size=4
from config.openwebtext_common import *  # noqa: F403  (data, batch and schedule)

out_dir = "out/gpt2_new"
wandb_run_name = "train_gpt2_new"
model = "gpt2-new"
n_layer = 36

