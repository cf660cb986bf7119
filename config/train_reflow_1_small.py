# reFlow small: 6 layers, 512 wide, 512 signals; a quick study that fits one GPU.
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1_small.py
# 46.47M parameters (derived in config/README.md; python check.py config/train_reflow_1_small.py).
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
learning_rate = 6e-4
min_lr = 6e-5
