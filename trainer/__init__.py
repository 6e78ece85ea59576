"""Training side of sar-compress: model variants, data, losses, loop, checkpoints, evaluation (torch)."""
