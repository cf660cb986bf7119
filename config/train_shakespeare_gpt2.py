# gpt2 on the embedded Shakespeare corpus, at the CPU size shared by all five models.
#   python train.py config/train_shakespeare_gpt2.py
# Planned for 1 x cpu: 0.88 GiB per process (python check.py config/train_shakespeare_gpt2.py --memory).
from config.shakespeare_common import *  # noqa: F403  (the shared size and schedule)

out_dir = "out/shakespeare_gpt2"
wandb_run_name = "shakespeare_gpt2"
model = "gpt2"

