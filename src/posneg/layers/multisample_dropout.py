"""Multi-sample dropout: M dropout masks over one trunk output, one shared head, averaged loss.

Inoue. *Multi-Sample Dropout for Accelerated Training and Better Generalization.* arXiv
1905.09788, 2019. No official code exists; this follows the paper's algorithm (shared head,
independent masks, one dropout rate, loss averaging), with logit averaging only as a flag.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = [
    "MultiSampleDropout",
    "multi_sample_dropout",
    "multi_sample_loss",
    "sample_dropout_masks",
]

CITATION = """
@article{inoue2019multisample,
  title   = {Multi-Sample Dropout for Accelerated Training and Better Generalization},
  author  = {Inoue, Hiroshi},
  journal = {arXiv preprint arXiv:1905.09788},
  year    = {2019}
}
"""

_AVERAGES = ("loss", "logits")


def _check_p(fn: str, p: object) -> float:
    return _checks.check_range(fn, "p", p, 0.0, 1.0, high_open=True)


def sample_dropout_masks(
    h: torch.Tensor,
    *,
    num_samples: int,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``num_samples`` independent keep-masks ``m_k ~ Bernoulli(1 - p)`` shaped like ``h``.

    Masks are independent across samples k and across every element of ``h`` (so across
    examples). See :class:`MultiSampleDropout`.

    Args:
        h: (B, ...) trunk output; only its shape and device are used.
        num_samples: M >= 1.
        p: drop probability in [0, 1).
        generator: the source of randomness (``None``: torch's global RNG).

    Returns:
        (M, B, ...) bool tensor, True where the element is kept.

    Raises:
        TypeError: ``h`` not a floating tensor, bad ``num_samples``/``generator`` type.
        ValueError: ``num_samples`` < 1, ``p`` outside [0, 1), generator on another device.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_dropout_masks(torch.zeros(4, 6), num_samples=3, generator=g).shape
        torch.Size([3, 4, 6])
    """
    fn = "sample_dropout_masks"
    _checks.check_float(fn, "h", h)
    m = _checks.check_int(fn, "num_samples", num_samples, min_value=1)
    pp = _check_p(fn, p)
    _checks.check_generator(fn, generator, h.device)
    u = torch.rand((m, *h.shape), generator=generator, device=h.device, dtype=torch.float32)
    return u >= pp


def multi_sample_dropout(
    h: torch.Tensor,
    masks: torch.Tensor,
    *,
    head: Callable[[torch.Tensor], torch.Tensor],
    p: float = 0.5,
) -> torch.Tensor:
    """Apply the shared head to each dropout sample: ``z_k = head(m_k * h / (1 - p))``.

    Deterministic kernel of :class:`MultiSampleDropout`: the M masked copies are stacked into
    one (M*B, ...) batch so the head runs once (a BatchNorm in the head would therefore see the
    M copies together; keep BatchNorm out of the duplicated head, as the paper advises).

    Args:
        h: (B, ...) trunk output (computed once).
        masks: (M, B, ...) bool keep-masks from :func:`sample_dropout_masks`.
        head: the shared head g, mapping (N, ...) to (N, C).
        p: the drop probability the masks were drawn with (inverted-dropout scale 1/(1 - p)).

    Returns:
        (M, B, C) logits, one slice per dropout sample.

    Raises:
        TypeError: non-floating ``h``, non-bool ``masks``.
        ValueError: ``masks`` not shaped (M, *h.shape), devices differ, ``p`` outside [0, 1).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> h, head = torch.randn(4, 6, generator=g), torch.nn.Linear(6, 3)
        >>> masks = sample_dropout_masks(h, num_samples=2, generator=g)
        >>> multi_sample_dropout(h, masks, head=head).shape
        torch.Size([2, 4, 3])
    """
    fn = "multi_sample_dropout"
    _checks.check_float(fn, "h", h)
    _checks.check_tensor(fn, "masks", masks)
    if masks.dtype != torch.bool:
        raise TypeError(f"{fn}: masks must be a bool tensor; got {masks.dtype}")
    if masks.dim() != h.dim() + 1 or masks.shape[1:] != h.shape:
        raise ValueError(
            f"{fn}: masks must have shape (M, {', '.join(map(str, h.shape))}); "
            f"got {tuple(masks.shape)}"
        )
    _checks.check_same_device(fn, "masks", masks, "h", h)
    pp = _check_p(fn, p)
    m, b = masks.shape[0], h.shape[0]
    dropped = masks.to(h.dtype) * h.unsqueeze(0) / (1.0 - pp)
    z = head(dropped.reshape(m * b, *h.shape[1:]))
    return z.reshape(m, b, *z.shape[1:])


def multi_sample_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    average: str = "loss",
) -> torch.Tensor:
    """The multi-sample dropout loss ``L = (1/M) sum_k CE(z_k, y)`` (the paper's version).

    ``average="logits"`` instead computes ``CE((1/M) sum_k z_k, y)``, a common deviation in
    community code; by Jensen its value and gradient differ (it is <= the loss average).

    Args:
        logits: (M, B, C) per-sample logits from :func:`multi_sample_dropout`, or (B, C) (one
            sample: eval mode, plain cross-entropy).
        target: (B,) int64 class indices.
        average: "loss" (paper) or "logits".

    Returns:
        Scalar mean over the batch (and the samples).

    Raises:
        TypeError: non-floating logits, non-integer target.
        ValueError: bad shapes or ``average``.

    Example:
        >>> import torch
        >>> z = torch.zeros(8, 4, 3)
        >>> round(float(multi_sample_loss(z, torch.zeros(4, dtype=torch.long))), 4)
        1.0986
    """
    fn = "multi_sample_loss"
    _checks.check_float(fn, "logits", logits)
    avg = _checks.check_choice(fn, "average", average, _AVERAGES)
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    if logits.dim() != 3:
        raise ValueError(
            f"{fn}: logits must have shape (M, B, C) or (B, C); got {tuple(logits.shape)}"
        )
    target = _checks.check_labels(fn, "target", target, logits.shape[1], logits.device)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if avg == "logits":
        return F.cross_entropy(z.mean(dim=0), target)
    m, b, c = z.shape
    return F.cross_entropy(z.reshape(m * b, c), target.repeat(m))


class MultiSampleDropout(nn.Module):
    """Multi-sample dropout head (Inoue, arXiv 1905.09788, 2019).

    Wraps the shared head g. In training mode ``forward(h)`` draws M independent masks with
    ``generator`` and returns the (M, B, C) logits ``z_k = g(m_k * h / (1 - p))``; pass them to
    :func:`multi_sample_loss` (or :meth:`loss`). In eval mode it returns ``g(h)`` (B, C): one
    pass with dropout off, where all samples coincide. The trunk runs once outside this module,
    so its forward and backward are paid once; only the head is repeated (batched as M*B rows).

    Args:
        head: the shared head g (one module for all samples: weights are shared).
        num_samples: M >= 1 (the paper uses 8).
        p: drop probability in [0, 1) (paper 0.5), the same for every sample.
        average: "loss" (paper) or "logits" (flag for the community variant).

    Example:
        >>> import torch
        >>> msd = MultiSampleDropout(torch.nn.Linear(6, 3), num_samples=4)
        >>> g = torch.Generator().manual_seed(0)
        >>> h, y = torch.randn(5, 6, generator=g), torch.tensor([0, 1, 2, 0, 1])
        >>> msd(h, generator=g).shape
        torch.Size([4, 5, 3])
        >>> msd.loss(msd(h, generator=g), y).dim()
        0
    """

    def __init__(
        self, head: nn.Module, *, num_samples: int = 8, p: float = 0.5, average: str = "loss"
    ) -> None:
        super().__init__()
        fn = "MultiSampleDropout"
        if not isinstance(head, nn.Module):
            raise TypeError(f"{fn}: head must be an nn.Module; got {type(head).__name__}")
        self.head = head
        self.num_samples = _checks.check_int(fn, "num_samples", num_samples, min_value=1)
        self.p = _check_p(fn, p)
        self.average = _checks.check_choice(fn, "average", average, _AVERAGES)

    def forward(self, h: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """(M, B, C) per-sample logits in training mode; ``head(h)`` (B, C) in eval mode."""
        if not self.training:
            _checks.check_float("MultiSampleDropout", "h", h)
            return self.head(h)
        masks = sample_dropout_masks(h, num_samples=self.num_samples, p=self.p, generator=generator)
        return multi_sample_dropout(h, masks, head=self.head, p=self.p)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:func:`multi_sample_loss` with this module's ``average``."""
        return multi_sample_loss(logits, target, average=self.average)

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, p={self.p}, average={self.average!r}"
