# Sample from the published reflow run (config/train_reflow_1.py writes out/reflow_1/ckpt.pt).
#   python sample.py config/sample_reflow_1.py
#   python sample.py config/sample_reflow_1.py --start="FILE:prompt.txt" --num_samples=1 --temperature=0
# Any run works the same way: --out_dir=out/<run> (or a checkpoint file).

out_dir = "out/reflow_1"
start = "\n"  # or "FILE:path/to/prompt.txt"
num_samples = 3
max_new_tokens = 200
temperature = 0.8  # 0 is greedy; higher is more random
top_k = 200  # sample among the 200 most likely tokens; None for all
seed = 1337
device = "auto"
dtype = "auto"
