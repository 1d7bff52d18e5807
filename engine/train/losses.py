"""One loss that covers every strategy: class weights, focal modulation, logit adjustment,
label smoothing, hard or soft (MixUp/CutMix) targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BalancedLoss(nn.Module):
    def __init__(self, num_classes: int, class_weights: torch.Tensor | None = None, focal_gamma: float = 0.0,
                 logit_offset: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.focal_gamma = float(focal_gamma)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.empty(0))
        self.register_buffer("logit_offset", logit_offset if logit_offset is not None else torch.empty(0))

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        device = self.class_weights.device
        self.class_weights = weights.to(device=device, dtype=torch.float32) if weights is not None else torch.empty(0, device=device)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.logit_offset.numel():
            logits = logits + self.logit_offset
        soft = F.one_hot(target, self.num_classes).float() if target.ndim == 1 else target.float()
        if self.label_smoothing:
            soft = soft * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        log_p = F.log_softmax(logits, dim=1)
        per_class = -soft * log_p
        if self.focal_gamma:
            per_class = per_class * (1.0 - log_p.exp()).clamp_min(0).pow(self.focal_gamma)
        if self.class_weights.numel():
            per_class = per_class * self.class_weights
            norm = (soft * self.class_weights).sum()
            return per_class.sum() / norm.clamp_min(1e-12)
        return per_class.sum(dim=1).mean()
