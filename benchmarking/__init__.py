"""What bench.py measures and how: training throughput, FLOP/s and MFU, peak memory, sampling speed."""
