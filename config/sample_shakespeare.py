# Sample from the Shakespeare runs (python train.py config/train_shakespeare_<model>.py).
#   python sample.py config/sample_shakespeare.py                                  # reflow
#   python sample.py config/sample_shakespeare.py --out_dir=out/shakespeare_gpt2   # or any of the five

out_dir = "out/shakespeare_reflow"
start = "ROMEO:"
num_samples = 3
max_new_tokens = 200
temperature = 0.8
top_k = 200
seed = 1337
device = "cpu"
dtype = "float32"
