"""The small networks the benches train, kept apart from the recipes that train them.

- :class:`Encoder` (``bench contrastive``): an MLP backbone, the part a probe scores, and a
  projection head fed to the objective.
- :class:`Conv1dEncoder` (``bench contrastive --dataset mnist1d``): the same backbone/head split
  with a small 1-D CNN backbone for sequences (B, L).
- :class:`MomentumKeys` (``bench contrastive``, MoCo-style objectives): a momentum copy of an
  encoder that makes the keys, and a :class:`~posneg.negatives.MemoryQueue` of its past keys.
- :class:`MLP` (``bench imbalance``): one logit per sample.

Layers are created in a fixed order, so that a seed fixes the initial weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from posneg.data import Dataset
from posneg.negatives import MemoryQueue

__all__ = ["MLP", "Conv1dEncoder", "Encoder", "MomentumKeys", "encoder_for"]


class Encoder(nn.Module):
    """MLP backbone ``in_dim -> hidden -> feat`` (probed) and projection head ``feat -> proj``."""

    FEAT_DIM = 128
    PROJ_DIM = 64

    def __init__(
        self, in_dim: int, *, hidden: int = 256, feat: int = FEAT_DIM, proj: int = PROJ_DIM
    ) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, feat),
            nn.BatchNorm1d(feat),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(), nn.Linear(feat, proj))
        self.feat_dim = feat
        self.proj_dim = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection-head output (B, proj)."""
        return self.head(self.backbone(x))


class Conv1dEncoder(Encoder):
    """1-D CNN backbone for sequences (B, L) and the projection head of :class:`Encoder`.

    Backbone: three convolutions (1 -> c, kernel 5, stride 2; c -> 2c, kernel 5, stride 2;
    2c -> 2c, kernel 3; c = ``channels``, 16), each with BatchNorm and ReLU, flattened, then
    ``Linear -> feat`` with BatchNorm and ReLU (the probed features). About the size of the CNN
    of the MNIST-1D paper (three convolutions, ~94% supervised test accuracy there).
    """

    def __init__(
        self, length: int, *, channels: int = 16, feat: int = Encoder.FEAT_DIM, proj: int = 64
    ) -> None:
        nn.Module.__init__(self)
        self.feat_dim, self.proj_dim, c = feat, proj, channels
        out_len = ((length + 1) // 2 + 1) // 2
        self.backbone = nn.Sequential(
            nn.Unflatten(1, (1, length)),
            nn.Conv1d(1, c, 5, stride=2, padding=2),
            nn.BatchNorm1d(c),
            nn.ReLU(),
            nn.Conv1d(c, 2 * c, 5, stride=2, padding=2),
            nn.BatchNorm1d(2 * c),
            nn.ReLU(),
            nn.Conv1d(2 * c, 2 * c, 3, padding=1),
            nn.BatchNorm1d(2 * c),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * c * out_len, feat),
            nn.BatchNorm1d(feat),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(), nn.Linear(feat, proj))


def encoder_for(data: Dataset) -> Encoder:
    """The bench encoder of ``data``: :class:`Conv1dEncoder` for MNIST-1D, else the MLP."""
    if data.name == "mnist1d":
        return Conv1dEncoder(data.n_features)
    return Encoder(data.n_features)


class MomentumKeys:
    """A momentum key encoder and a memory queue of its past keys, started full.

    Args:
        model: the query encoder; the key encoder starts as its copy.
        x: the training inputs; the queue starts with keys of a random subset of them.
        view: ``view(x, generator)``, an augmented view.
        generator: draws the starting subset and its views.
        size: queue capacity (at most ``len(x)``).
        momentum: weight of the key encoder's own parameters in each update.
    """

    def __init__(
        self,
        model: Encoder,
        x: torch.Tensor,
        view: Callable[..., torch.Tensor],
        generator: torch.Generator,
        *,
        size: int,
        momentum: float,
    ) -> None:
        self.key_model = copy.deepcopy(model).requires_grad_(False)
        self.momentum = momentum
        n = x.shape[0]
        self.queue = MemoryQueue(min(size, n), model.proj_dim, device=x.device)
        with torch.no_grad():  # keys of a random subset of the train split
            first = torch.randperm(n, device=x.device, generator=generator)[: self.queue.capacity]
            keys = self.key_model(view(x[first], generator))
            self.queue.enqueue(nn.functional.normalize(keys, dim=1))

    def loss(
        self,
        fn: nn.Module,
        model: Encoder,
        v1: torch.Tensor,
        v2: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``fn(query, key, queue)``: query from ``model``, key from the momentum encoder.

        ``generator`` is passed on to ``fn`` when given (an objective that draws).
        """
        q = model(v1)
        with torch.no_grad():
            self.keys = nn.functional.normalize(self.key_model(v2), dim=1)
        extra = {"generator": generator} if generator is not None else {}
        return fn(q, self.keys, self.queue.negatives(), **extra)

    @torch.no_grad()
    def update(self, model: Encoder) -> None:
        """Momentum step of the key encoder, then the last keys join the queue."""
        m = self.momentum
        for pk, pq in zip(self.key_model.parameters(), model.parameters(), strict=True):
            pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)
        for bk, bq in zip(self.key_model.buffers(), model.buffers(), strict=True):
            bk.copy_(bq)
        self.queue.enqueue(self.keys)


class MLP(nn.Module):
    """``in_dim -> hidden -> hidden -> 1`` with ReLU: one logit per sample."""

    def __init__(self, in_dim: int, *, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B,)."""
        return self.net(x).squeeze(-1)
