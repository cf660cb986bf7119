"""What export_hf.py writes: a Hugging Face transformers model directory and GPT-2's tokenizer files."""
