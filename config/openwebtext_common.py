# Settings shared by the seven published full-scale configs: OpenWebText, context 1024, no
# biases, 16 heads of 64 at width 1024, and one batch and schedule for all (the architectures
# differ, the training recipe does not).

dataset = "openwebtext"
block_size = 1024
n_head = 16
n_embd = 1024
bias = False
dropout = 0.0

# 4 GPUs x 4 sequences x 30 accumulation steps x 1024 tokens = 491,520 tokens per step,
# nanoGPT's ~0.5M-token batch.
batch_size = 4
gradient_accumulation_steps = 120

# Planned for 4 x Tesla T4 (16 GB; 15 GiB usable), the hardware the published runs used. Without these
# three the 413-515M models need 17.8-21.8 GiB per GPU at micro-batch 4 (python check.py CONFIG --memory
# --gpu=t4 --world_size=4); with them 9.0-11.2 GiB, at the same micro-batch and tokens per step.
shard = "optimizer"  # ZeRO-1: each GPU keeps a quarter of AdamW's state (saves 2.4-3.0 GiB)
activation_checkpointing = True  # each block keeps its input only (saves 4.8-6.0 GiB; ~1/3 more compute)
chunked_loss = True  # the (positions, 50304) logits one chunk at a time (saves 1.6 GiB)

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
dtype = "auto"  # bfloat16 where the GPU has it, else float16 with a GradScaler (Tesla T4)
wandb_log = False  # set True (or --wandb_log=True) to log to wandb
wandb_project = "reflow"
