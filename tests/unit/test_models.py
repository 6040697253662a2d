import pytest
import torch

from classifier import models


@pytest.mark.parametrize(
    "architecture", ["resnet18", "squeezenet1_1", "mobilenet_v3_small", "efficientnet_b0"]
)
def test_head_is_sized_for_the_classes(architecture):
    model = models.create_model(architecture, 7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_registry_lists_classifiers_only():
    names = models.classification_models()
    assert {"resnet50", "densenet161", "squeezenet1_1", "mobilenet_v3_large", "vit_b_16"} <= set(names)
    assert "fasterrcnn_resnet50_fpn" not in names


def test_pretrained_from_channel_loads_backbone_and_reports_head(tmp_path):
    source = models.create_model("resnet18", 1000)
    channel = tmp_path / "pretrained"
    channel.mkdir()
    torch.save(source.state_dict(), channel / "resnet18.pth")
    target = models.create_model("resnet18", 5)
    head = models.load_pretrained(target, "resnet18", channel)
    assert head == {"fc.weight", "fc.bias"}
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    trainable = models.freeze_all_but(target, head)
    assert trainable == 512 * 5 + 5
    assert not target.conv1.weight.requires_grad and target.fc.weight.requires_grad


def test_pretrained_of_another_architecture_is_refused(tmp_path):
    channel = tmp_path / "pretrained"
    channel.mkdir()
    torch.save(models.create_model("squeezenet1_1", 1000).state_dict(), channel / "w.pt")
    with pytest.raises(models.PretrainedWeightsError, match="does not fit resnet18"):
        models.load_pretrained(models.create_model("resnet18", 5), "resnet18", channel)


def test_channel_must_hold_one_state_dict(tmp_path):
    channel = tmp_path / "pretrained"
    channel.mkdir()
    with pytest.raises(models.PretrainedWeightsError, match="exactly one state_dict file"):
        models.load_pretrained(models.create_model("resnet18", 5), "resnet18", channel)


def test_unavailable_torchvision_weights_fail_with_a_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-cache"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(models.PretrainedWeightsError) as error:
        models.load_pretrained(models.create_model("resnet18", 5), "resnet18", None)
    message = str(error.value)
    assert "ResNet18_Weights.IMAGENET1K_V1" in message and "empty-cache" in message
    assert "'pretrained' channel" in message
