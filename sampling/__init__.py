"""What sample.py needs: prompts from text or files, a checkpoint loaded for generation, chat replies."""
