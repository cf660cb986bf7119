"""What train.py needs: batches drawn by (seed, step), the optimization step, DDP bookkeeping,
the stop request (Ctrl-C / SIGTERM), and the run log."""
