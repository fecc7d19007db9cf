"""A detector whose GroupNorm affines are away from their initial values, as after training."""

import torch

from common.learning.models import Detector


def trained_like_detector(seed: int = 0) -> Detector:
    """Return a default :class:`Detector` in eval mode with randomised GroupNorm affines."""
    torch.manual_seed(seed)
    det = Detector().eval()
    with torch.no_grad():
        for m in det.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    return det
