# reflow on the embedded Shakespeare corpus, at the CPU size shared by all five models.
#   python train.py config/train_shakespeare_reflow.py
# Planned for 1 x cpu: 0.92 GiB per process (python check.py config/train_shakespeare_reflow.py --memory).
from config.shakespeare_common import *  # noqa: F403  (the shared size and schedule)

out_dir = "out/shakespeare_reflow"
wandb_run_name = "shakespeare_reflow"
model = "reflow"

