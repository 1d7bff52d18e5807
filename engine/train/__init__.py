"""Training: config, strategies, losses, augmentation, models, the epoch loop, checkpoints and the run folder."""
