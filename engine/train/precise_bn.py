"""Precise BatchNorm statistics before each evaluation (Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021; detectron2's PreciseBN).

During training BatchNorm keeps running averages of its batch statistics, each an average over
recent batches of weights that kept changing. After a few dozen steps (a small folder's first
epochs) they lag so far behind that a model right on 84 % of its training batches predicted one
class for every validation image (cifar-classic, 3 epochs on the demo: 10 % balanced accuracy; with
these statistics 54 %). Recomputing them for the current weights on clean training images costs
at most a few dozen forward passes per epoch.
"""
from __future__ import annotations

import numpy as np
import torch

from balancelab.engine.data.image_bank import ImageBank

#: Batches of training images the statistics are computed on (all of a small training split).
CALIBRATION_BATCHES = 50


def recalibrate_batchnorm(model: torch.nn.Module, bank: ImageBank, device: torch.device, batch_size: int,
                          channels_last: bool = False, batches: int = CALIBRATION_BATCHES, seed: int = 0) -> bool:
    """Replace every BatchNorm layer's running mean and variance by their average over up to
    ``batches`` batches of ``bank`` (un-augmented, a seeded sample). Only BatchNorm layers run in
    training mode: dropout stays off, so no random number is drawn and training replays the same.
    Returns False, changing nothing, for a model without BatchNorm or fewer than two images."""
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or len(bank) < 2:
        return False
    batch_size = max(2, batch_size)
    order = np.random.default_rng(seed).permutation(len(bank))[:batches * batch_size]
    was_training = model.training
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
        m.train()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = np.sort(order[start:start + batch_size])
                if len(idx) < 2:  # a batch of one has no variance to measure
                    continue
                x, _ = bank.batch(idx, device, channels_last)
                model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return True
