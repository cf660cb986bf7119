# The one CPU size shared by all five train_shakespeare_<model>.py configs, so they compare
# fairly: same depth, width, context, batch and schedule; only the architecture differs.
# Sized so reflow trains on 2 CPU cores in about 10 minutes.

dataset = "shakespeare"
n_layer = 4
n_head = 4
n_embd = 256
block_size = 256
bias = False
dropout = 0.0
n_signals = 256  # S = n_embd, as in the published reflows

batch_size = 8
gradient_accumulation_steps = 1
learning_rate = 2e-3
max_iters = 400
lr_decay_iters = 400
warmup_iters = 20
min_lr = 2e-4
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 100
eval_iters = 20
log_interval = 10
always_save_checkpoint = False
device = "cpu"
dtype = "float32"
compile = False
wandb_log = False
wandb_project = "reflow-shakespeare"
