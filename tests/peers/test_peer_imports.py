"""The peers installed for parity tests of families still landing (posneg.ood against
pytorch-ood, adversarial positives/negatives against torchattacks, CLIP-based units against
open_clip): each imports in ``.venv-peers`` next to torch 2.14 / torchvision 0.29, without
network access (open_clip lists its model configs offline)."""

from __future__ import annotations

import pytest
import torch
from _peer import peer

torchvision = peer("torchvision")


def test_torch_and_torchvision_are_the_pinned_pair() -> None:
    assert torch.__version__.split("+")[0] == "2.14.0"
    assert torchvision.__version__.split("+")[0] == "0.29.1"
    ops = peer("torchvision.ops")
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.1, 0.1, 2.1, 2.1], [5.0, 5.0, 6.0, 6.0]])
    keep = ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)  # the op that fails elsewhere
    assert keep.tolist() == [0, 2]


@pytest.mark.parametrize(
    ("module", "attribute"),
    [
        ("timm", "create_model"),
        ("lightly.loss", "NTXentLoss"),
        ("kornia.augmentation", "RandomMixUpV2"),
        ("pytorch_ood.detector", "EnergyBased"),
        ("torchattacks", "PGD"),
        ("open_clip", "list_models"),
    ],
)
def test_peer_imports(module: str, attribute: str) -> None:
    assert hasattr(peer(module), attribute)


def test_open_clip_lists_models_offline() -> None:
    open_clip = peer("open_clip")
    assert "ViT-B-32" in open_clip.list_models()


def test_torchattacks_runs_on_a_tiny_model() -> None:
    torchattacks = peer("torchattacks")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    x = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    adv = torchattacks.FGSM(model, eps=0.1)(x, torch.tensor([0, 1]))
    assert adv.shape == x.shape
    assert (adv - x).abs().max().item() <= 0.1 + 1e-6
