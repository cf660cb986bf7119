# reFlow-topk: ReLU then the top 64 of 1024 signals per recipe row, 36 layers.
# Full scale: OpenWebText on 4 GPUs (the published runs used Tesla T4s: fp16, no bf16).
#   python data/openwebtext/prepare.py
#   torchrun --standalone --nproc_per_node=4 train.py config/train_reflow_1_topk_big.py
# Parameter count (515.06M) is derived in config/README.md; check it with: python check.py config/train_reflow_1_topk_big.py

out_dir = "out/reflow_1_topk_big"
wandb_log = False  # set True (or --wandb_log=True) to log to wandb
wandb_project = "reflow"
wandb_run_name = "train_reflow_1_topk_big"

dataset = "openwebtext"
model = "reflow-topk"
n_layer = 36
n_head = 16
n_embd = 1024
block_size = 1024
bias = False
dropout = 0.0
n_signals = 1024
topk = 64
# 4 GPUs x 4 sequences x 30 accumulation steps x 1024 tokens = 491,520 tokens per step,
# nanoGPT's ~0.5M-token batch.
batch_size = 4
gradient_accumulation_steps = 120

learning_rate = 3e-4
max_iters = 100000
lr_decay_iters = 100000
warmup_iters = 2000
min_lr = 3e-5
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 1000
eval_iters = 200
log_interval = 10
dtype = "auto"  # bfloat16 where the GPU has it, else float16 with a GradScaler
