# Continue config/train_reflow_1_topk_big.py's run (out_dir) from its last checkpoint: weights, optimizer, step
# and data position, exactly where it stopped.
#   torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1_topk_big_resume.py
# Planned for 4 x t4: 11.21 GiB per GPU of 15.00: the settings of config/train_reflow_1_topk_big.py.
#   python check.py config/train_reflow_1_topk_big_resume.py --memory --gpu=t4 --world_size=4
from config.train_reflow_1_topk_big import *  # noqa: F403  (the run's own settings)

init_from = "resume"
