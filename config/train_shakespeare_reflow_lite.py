# reflow-lite on the embedded Shakespeare corpus, at the CPU size shared by all five models.
#   python train.py config/train_shakespeare_reflow_lite.py
# Planned for 1 x cpu: 0.90 GiB per process (python check.py config/train_shakespeare_reflow_lite.py --memory).
from config.shakespeare_common import *  # noqa: F403  (the shared size and schedule)

out_dir = "out/shakespeare_reflow_lite"
wandb_run_name = "shakespeare_reflow_lite"
model = "reflow-lite"
n_kv_head = 1  # one key/value head shared by the 4 query heads
