# gpt2-new baseline: RoPE, SwiGLU, RMSNorm, tied embedding and head.
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_gpt2_new.py
# 514.01M parameters (derived in config/README.md; python check.py config/train_gpt2_new.py).
from config.openwebtext_common import *  # noqa: F403  (data, batch and schedule)

out_dir = "out/gpt2_new"
wandb_run_name = "train_gpt2_new"
model = "gpt2-new"
n_layer = 36

