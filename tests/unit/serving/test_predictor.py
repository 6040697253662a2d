"""Decoding limits and the conv-bn fusion the predictor serves, checked against the original."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from classifier.inference.torch_backend import fuse_for_inference
from classifier.models import create_model
from classifier.serving.predictor import InvalidInput, decode_image

from .conftest import encode, photo


def trained_looking_resnet() -> nn.Module:
    """Batch-norm statistics away from their defaults, as after training."""
    torch.manual_seed(1)
    model = create_model("resnet18", 5).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    return model


def test_fusion_folds_batch_norm_and_keeps_the_answers():
    model = trained_looking_resnet()
    fused = fuse_for_inference(model, 32)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    inputs = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(torch.softmax(fused(inputs), 1), torch.softmax(model(inputs), 1), atol=1e-5)


def test_untraceable_models_are_served_as_they_are():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x):
            if x.sum() > 0:  # fx cannot trace control flow on values
                return self.linear(x.mean((2, 3)))
            return -self.linear(x.mean((2, 3)))

    model = DataDependent().eval()
    assert fuse_for_inference(model, 8) is model


def test_a_fusion_that_changes_answers_is_rejected(monkeypatch):
    model = trained_looking_resnet()

    def wrong_fuse(module):
        return create_model("resnet18", 5).eval()

    monkeypatch.setattr("torch.fx.experimental.optimization.fuse", wrong_fuse)
    assert fuse_for_inference(model, 32) is model


def test_decode_limits_and_modes():
    assert decode_image(encode(photo().convert("CMYK"), "JPEG")).mode == "RGB"
    with pytest.raises(InvalidInput, match="decompression bomb"):
        decode_image(encode(photo(100, 100), "PNG"), max_pixels=9_999)
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"")


def test_large_jpegs_decode_reduced_but_never_below_the_needed_side():
    big = photo(2400, 1600, seed=3)
    # 1/8 scale would make the short side 200 < 256, so libjpeg decodes at 1/4.
    assert decode_image(encode(big, "JPEG", quality=90), min_side=256).size == (600, 400)
    assert decode_image(encode(big, "JPEG", quality=90)).size == (2400, 1600)
    assert decode_image(encode(big, "PNG"), min_side=256).size == (2400, 1600)
