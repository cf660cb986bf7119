# reFlow-topk: ReLU, then the top 64 of 1024 signals per recipe row; 36 layers.
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1_topk_big.py
# 515.06M parameters (derived in config/README.md; python check.py config/train_reflow_1_topk_big.py).
# Planned for 4 x t4: 11.21 GiB per GPU of 15.00 (was 21.84, more than a T4 has): shard,
#   activation checkpointing and chunked loss (config/openwebtext_common.py); same micro-batch and tokens per step.
#   python check.py config/train_reflow_1_topk_big.py --memory --gpu=t4 --world_size=4
from config.openwebtext_common import *  # noqa: F403  (data, batch and schedule)

out_dir = "out/reflow_1_topk_big"
wandb_run_name = "train_reflow_1_topk_big"
model = "reflow-topk"
n_layer = 36
n_signals = 1024
topk = 64
