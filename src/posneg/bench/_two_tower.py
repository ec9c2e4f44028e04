"""A small CLIP-style two-tower model for the image-text benches and tests (a stand-in for CLIP).

Image tower: an MLP over flattened small images (8x8 or 8x16). Text tower: token embedding plus
position embedding, a per-token MLP (so word order matters: a plain mean of token + position
embeddings would give "3 left 5" and "5 left 3" the same vector), a mean over non-padding
tokens and a linear head. Both outputs are L2-normalised; ``forward`` returns
``(image_features, text_features, logit_scale.exp())`` like an open_clip model, so the losses
see the same interface as with a real CLIP. Trains in seconds on CPU.

What a real CLIP run would change: the towers (a ViT/ResNet and a 12-layer text transformer
with a BPE tokenizer) and their pretraining on 400M pairs, which gives the zero-shot ability the
fine-tuning must retain; the caption negatives written by an LLM instead of a template; batch
sizes of hundreds and mixed precision. The objectives, the EMA teacher and the frozen feature
banks are exercised here exactly as they would be there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TwoTower", "clip_loss", "pretrain"]


class TwoTower(nn.Module):
    """CLIP-style two-tower model (see the module docstring).

    Args:
        image_features: flattened image size (64 for 8x8, 128 for 8x16).
        vocab_size: number of token ids (0 is padding).
        max_len: token positions.
        dim: embedding dimension of the shared space.
        hidden: hidden width of both towers.
        init_temperature: initial temperature (logit_scale = log(1 / t), learnable).
    """

    def __init__(
        self,
        *,
        image_features: int,
        vocab_size: int,
        max_len: int = 8,
        dim: int = 32,
        hidden: int = 128,
        init_temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.image = nn.Sequential(
            nn.Flatten(),
            nn.Linear(image_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, dim),
        )
        self.token = nn.Embedding(vocab_size, hidden, padding_idx=0)
        self.position = nn.Parameter(0.1 * torch.randn(max_len, hidden))
        self.token_mlp = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.text_head = nn.Linear(hidden, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, ...) images -> (N, dim) unit features."""
        return F.normalize(self.image(images), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids (0 = padding) -> (N, dim) unit features."""
        h = self.token_mlp(self.token(tokens) + self.position[: tokens.shape[1]])
        mask = (tokens != 0).to(h.dtype)[..., None]
        pooled = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return F.normalize(self.text_head(pooled), dim=-1)

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(image_features, text_features, logit_scale.exp())`` as an open_clip model."""
        return self.encode_image(images), self.encode_text(tokens), self.logit_scale.exp()


def clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The symmetric CLIP loss of matched (B, D) features."""
    logits = scale * image @ text.T
    labels = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def pretrain(
    model: TwoTower,
    images: torch.Tensor,
    tokens: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    tick: Callable[[], None] | None = None,
) -> TwoTower:
    """Contrastive (CLIP) pretraining on matched ``images``/``tokens``; Adam; in place."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = images.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n - 1, batch_size):
            idx = perm[s : s + batch_size]
            if len(idx) < 2:
                continue
            img, txt, scale = model(images[idx], tokens[idx])
            loss = clip_loss(img, txt, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
        if tick is not None:
            tick()
    return model
