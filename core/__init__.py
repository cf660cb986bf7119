"""Machinery several entry scripts share: config, checkpoints, tokenizer, device and precision, chat
template, errors. What serves one script lives beside it: training/, sampling/, benchmarking/,
hf_export/; experiments/ serves experiment.py."""
