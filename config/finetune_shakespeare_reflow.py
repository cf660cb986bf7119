# Supervised fine-tuning (SFT) of the Shakespeare reflow on LIMA's conversations, loss on assistant
# tokens only: the whole SFT path on 2 CPU cores in a few minutes. Expect a small model that has
# learned the chat format, not a good assistant.
#   python train.py config/train_shakespeare_reflow.py   # the pretrained run: out/shakespeare_reflow
#   python data/sft-lima/prepare.py                      # or --input=train.jsonl offline
#   python train.py config/finetune_shakespeare_reflow.py
#   python sample.py --out_dir=out/shakespeare_reflow_lima --chat=True
# Planned for 1 x cpu: 0.92 GiB per process (python check.py config/finetune_shakespeare_reflow.py --memory).
from config.shakespeare_common import *  # noqa: F403  (CPU settings; the architecture comes from init_from)

init_from = "out/shakespeare_reflow"  # a run dir or ckpt.pt: its weights and architecture, fresh optimizer, iter 0
out_dir = "out/shakespeare_reflow_lima"
wandb_run_name = "shakespeare_reflow_lima"
model = "reflow"
dataset = "sft-lima"  # data/sft-lima/{train,val}.bin plus the *_mask.bin loss masks

# Fine-tuning: a tenth of the pretraining learning rate, short warmup, decay over the run.
learning_rate = 2e-4
min_lr = 2e-5
max_iters = 200
lr_decay_iters = 200
warmup_iters = 10
eval_interval = 50
always_save_checkpoint = True  # LIMA's val split is small and noisy: keep the latest weights
