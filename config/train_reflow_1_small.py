# reFlow small: 6 layers, 512 wide, 512 signals; a quick study that fits one GPU.
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1_small.py
# 46.47M parameters (derived in config/README.md; python check.py config/train_reflow_1_small.py).
# Planned for 4 x t4: 5.19 GiB per GPU of 15.00 (was 14.12 unchunked): chunked loss leaves a
#   margin; same micro-batch and tokens per step.
#   python check.py config/train_reflow_1_small.py --memory --gpu=t4 --world_size=4
from config.openwebtext_common import *  # noqa: F403  (data, batch and schedule)

out_dir = "out/reflow_1_small"
wandb_run_name = "train_reflow_1_small"
model = "reflow"
n_layer = 6
n_signals = 512
n_head = 8
n_embd = 512
# 4 GPUs x 16 sequences x 8 accumulation steps x 1024 tokens = 524,288 tokens per step.
batch_size = 16
gradient_accumulation_steps = 32
# 46M parameters need no sharding or checkpointing; at micro-batch 16 the (16 x 1024, 50304) logits
# are most of the memory (14.1 GiB unchunked, a hair under a T4's 15 GiB), so only the loss is chunked.
shard = "none"
activation_checkpointing = False
chunked_loss = True
learning_rate = 6e-4
min_lr = 6e-5
