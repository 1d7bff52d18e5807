import numpy as np
import torch

from balancelab.engine.results.gradcam import grad_cam
from balancelab.engine.train.models import build_model


def test_grad_cam_shapes_and_class_dependence():
    torch.manual_seed(0)
    model = build_model("cifar-classic", 3, 1, 32)
    maps, probs = grad_cam(model, torch.rand(1, 32, 32), [0, 1])
    assert maps.shape == (2, 32, 32)
    assert maps.min() >= 0 and maps.max() <= 1
    assert probs.shape == (3,) and abs(probs.sum() - 1) < 1e-5
    assert not np.allclose(maps[0], maps[1])
