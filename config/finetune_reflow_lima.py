# Supervised fine-tuning (SFT) of the published reflow on LIMA (Zhou et al. 2023): ~1k curated
# conversations, ~0.8M tokens, loss on assistant tokens only. Schedule after the LIMA paper:
# ~15 epochs, 32 sequences per step, learning rate 1e-5 decayed to 1e-6 with no warmup (the paper
# decays linearly; train.py's schedule is cosine).
#   python data/sft-lima/prepare.py          # or --input=train.jsonl offline (LIMA is gated on the hub)
#   torchrun --standalone --nproc_per_node=4 train.py config/finetune_reflow_lima.py
#   python sample.py --out_dir=out/reflow_1_lima --chat=True
# Planned for 4 x t4: 9.84 GiB per GPU of 15.00: the settings of config/train_reflow_1.py.
#   python check.py config/finetune_reflow_lima.py --memory --gpu=t4 --world_size=4
from config.train_reflow_1 import *  # noqa: F403  (the architecture of init_from's run: 463.67M)

init_from = "out/reflow_1"  # a run dir or ckpt.pt: its weights and architecture, fresh optimizer, iter 0
out_dir = "out/reflow_1_lima"
wandb_run_name = "reflow_1_lima"
dataset = "sft-lima"  # data/sft-lima/{train,val}.bin plus the *_mask.bin loss masks

# 4 sequences x 8 accumulation steps (over all ranks) x 1024 tokens = 32,768 tokens per step,
# so one epoch of LIMA is ~25 steps and 375 steps are ~15 epochs.
batch_size = 4
gradient_accumulation_steps = 8

learning_rate = 1e-5
min_lr = 1e-6
max_iters = 375
lr_decay_iters = 375
warmup_iters = 0

eval_interval = 25
eval_iters = 20
log_interval = 5
always_save_checkpoint = True  # LIMA's val split is ~50 conversations: keep the latest weights
