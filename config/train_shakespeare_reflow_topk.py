# reflow-topk on the embedded Shakespeare corpus, at the CPU size shared by all five models.
#   python train.py config/train_shakespeare_reflow_topk.py
# Planned for 1 x cpu: 1.06 GiB per process (python check.py config/train_shakespeare_reflow_topk.py --memory).
from config.shakespeare_common import *  # noqa: F403  (the shared size and schedule)

out_dir = "out/shakespeare_reflow_topk"
wandb_run_name = "shakespeare_reflow_topk"
model = "reflow-topk"
topk = 32  # 1/8 of the signals per recipe row
