"""Machinery shared by the entry scripts: config, checkpoints, tokenizer, data batches, errors."""
