"""Models whose GroupNorm affines are away from their initial values, as after training."""

import torch

from common.learning.models import Classifier, Detector


def trained_like_detector(seed: int = 0) -> Detector:
    """Return a default :class:`Detector` in eval mode with randomised GroupNorm affines."""
    return _randomise_norms(Detector, seed)


def trained_like_classifier(seed: int = 0) -> Classifier:
    """Return a default :class:`Classifier` in eval mode with randomised GroupNorm affines."""
    return _randomise_norms(Classifier, seed)


def _randomise_norms(model_class, seed: int):
    torch.manual_seed(seed)
    model = model_class().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    return model
