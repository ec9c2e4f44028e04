"""CoT's minority attribute augmentation (MAA) loss: mixed composed features vs a virtual concept.

Kim, Lee, Park, Sohn. Hierarchical Visual Primitive Experts for Compositional Zero-Shot Learning
(CoT). ICCV 2023, arXiv 2308.04016. The partners come from
:class:`posneg.mixing.minority.MinorityPartnerSampler` (CoT's ``sample_same_object2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, reduce_loss
from posneg._types import Reduction

__all__ = ["CITATION", "MAALoss", "maa_loss", "mix_attribute_embeddings"]

CITATION = """
@inproceedings{kim2023hierarchical,
  title     = {Hierarchical Visual Primitive Experts for Compositional Zero-Shot Learning},
  author    = {Kim, Hanjae and Lee, Jiyoung and Park, Seongheon and Sohn, Kwanghoon},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2023},
  eprint    = {2308.04016},
  archivePrefix = {arXiv}
}
"""


def _check_lam(fn: str, lam: object, b: int, ref_name: str, ref: torch.Tensor) -> torch.Tensor:
    """``lam`` as a (B, 1) tensor of ``ref``'s dtype and device (a float or a (B,) tensor)."""
    if isinstance(lam, torch.Tensor):
        if lam.dim() not in (0, 1) or (lam.dim() == 1 and lam.shape[0] != b):
            raise ValueError(
                f"{fn}: lam must be a float, a 0-d tensor or a ({b},) tensor; "
                f"got shape {tuple(lam.shape)}"
            )
        _checks.check_same_device(fn, "lam", lam, ref_name, ref)
        t = lam.detach().to(ref.dtype)
    else:
        t = torch.tensor(_checks.check_real(fn, "lam", lam), dtype=ref.dtype, device=ref.device)
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{fn}: lam must be in [0, 1]")
    return t.reshape(-1, 1).expand(b, 1)


def mix_attribute_embeddings(
    attribute_weight: torch.Tensor,
    attr: torch.Tensor,
    partner_attr: torch.Tensor,
    lam: float | torch.Tensor,
) -> torch.Tensor:
    """CoT's mixed attribute word vector ``lam * w[attr] + (1 - lam) * w[partner_attr]`` (B, E).

    The input of CoT's virtual concept ``c_hat = compose([w_o, mixed])``
    (``train_forward_augment``: ``new_attr``); compose it with your own composer and pass the
    result to :func:`maa_loss` as ``virtual_concept``.

    Args:
        attribute_weight: (A, E) attribute embeddings (CoT: GloVe-initialised, trained).
        attr: (B,) int attributes of the anchors.
        partner_attr: (B,) int attributes of the partners.
        lam: the mixing weight in [0, 1], a float or (B,) (CoT: one ``Beta(1, 1)`` per batch).

    Returns:
        (B, E) mixed attribute embeddings.
    """
    fn = "mix_attribute_embeddings"
    w = _checks.check_embeddings(fn, "attribute_weight", attribute_weight)
    for name, ids in (("attr", attr), ("partner_attr", partner_attr)):
        _checks.check_tensor(fn, name, ids)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dim() != 1:
            raise TypeError(f"{fn}: {name} must be a (B,) integer tensor; got {ids.dtype}")
    if attr.shape != partner_attr.shape:
        raise ValueError(
            f"{fn}: partner_attr must have shape {tuple(attr.shape)} matching attr; "
            f"got {tuple(partner_attr.shape)}"
        )
    lam_col = _check_lam(fn, lam, int(attr.shape[0]), "attribute_weight", w)
    return lam_col * w[attr] + (1.0 - lam_col) * w[partner_attr]


def maa_loss(
    features: torch.Tensor,
    partner_features: torch.Tensor,
    virtual_concept: torch.Tensor,
    concepts: torch.Tensor,
    *,
    lam: float | torch.Tensor,
    temperature: float = 0.1,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CoT's MAA loss: the mixed composed feature must pick its virtual concept over every pair.

    Kim, Lee, Park, Sohn. *Hierarchical Visual Primitive Experts for Compositional Zero-Shot
    Learning* (CoT). ICCV 2023, arXiv 2308.04016. Official code: HanjaeKim98/CoT, commit
    258476ab926ee0b24e27101182727f99363f06aa, ``models/cot.py::COT.train_forward_augment``
    (``mix_loss``).

    With ``v = features`` (the composed visual embeddings ``vis_comp`` of the anchors),
    ``v' = partner_features`` (those of their partners, same object, minority attribute),
    ``c_hat = virtual_concept`` (``compose([w_o, lam * w_a + (1 - lam) * w_a'])``, see
    :func:`mix_attribute_embeddings`), ``C = concepts`` (all P seen-pair concepts) and
    ``T = temperature``::

        v_hat  = normalize(lam * v + (1 - lam) * v')
        logits = [ v_hat . normalize(c_hat),  v_hat . normalize(C)^T ] / T      (B, 1 + P)
        L_i    = cross_entropy(logits_i, 0)

    The real pairs (a, o) and (a', o) are among the P negatives, as in the official code. This
    mixes composed *features*, not pixels (the abstract says "mixing two images"; the code
    mixes ``vis_comp``). CoT's full MAA step adds the standard losses on the doubled batch
    ``[x; x']`` (``L_comp + 0.4 L_obj + 0.6 L_attr``, the caller's model) and runs with
    probability 0.5 per iteration from ``aug_epoch`` on; ``lam ~ Beta(1, 1)`` = Uniform(0, 1),
    one per batch (draw it with ``torch.rand((), generator=g)``; the method's ``lam=0.5``
    argument is ignored by the official code). The partners come from
    :class:`posneg.mixing.minority.MinorityPartnerSampler`.

    Args:
        features: (B, D) composed visual embeddings of the anchors.
        partner_features: (B, D) those of the partners.
        virtual_concept: (B, D) composed concept of the mixed attribute with the anchor's
            object.
        concepts: (P, D) concepts of all seen (attribute, object) pairs, P >= 1.
        lam: mixing weight in [0, 1]: a float (CoT: one per batch) or a (B,) tensor. Not
            differentiated.
        temperature: T > 0 (CoT: 0.1).
        reduction: "mean" (CoT's) | "sum" | "none".

    Returns:
        "mean"/"sum": a scalar; "none": (B,). float16/bfloat16 inputs compute and return
        float32.

    Raises:
        TypeError: non-floating inputs, mismatched dtypes, a non-real ``lam``.
        ValueError: wrong shapes, mismatched devices, ``lam`` outside [0, 1] or of the wrong
            shape, temperature <= 0, a bad reduction.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> v, v2, c_hat = (torch.randn(4, 8, generator=g) for _ in range(3))
        >>> concepts = torch.randn(10, 8, generator=g)
        >>> lam = float(torch.rand((), generator=g))  # Beta(1, 1), one per batch
        >>> maa_loss(v, v2, c_hat, concepts, lam=lam).shape
        torch.Size([])
    """
    fn = "maa_loss"
    t = _checks.check_positive(fn, "temperature", temperature)
    _checks.check_reduction(fn, reduction)
    _checks.check_embeddings(fn, "features", features)
    names = ("partner_features", "virtual_concept")
    for name, x in zip(names, (partner_features, virtual_concept), strict=True):
        _checks.check_embeddings(fn, name, x)
        _checks.check_same_shape(fn, name, x, "features", features)
        _checks.check_same_device(fn, name, x, "features", features)
        _checks.check_same_dtype(fn, name, x, "features", features)
    _checks.check_embeddings(fn, "concepts", concepts)
    _checks.check_same_dim(fn, "concepts", concepts, "features", features)
    _checks.check_same_device(fn, "concepts", concepts, "features", features)
    _checks.check_same_dtype(fn, "concepts", concepts, "features", features)
    dtype = compute_dtype(features)
    v, v2 = features.to(dtype), partner_features.to(dtype)
    lam_col = _check_lam(fn, lam, int(features.shape[0]), "features", v)
    v_hat = F.normalize(lam_col * v + (1.0 - lam_col) * v2, dim=-1)
    c_hat = F.normalize(virtual_concept.to(dtype), dim=-1)
    c_all = F.normalize(concepts.to(dtype), dim=-1)
    positive = (v_hat * c_hat).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, v_hat @ c_all.T], dim=1) / t
    per_sample = torch.logsumexp(logits, dim=1) - logits[:, 0]
    return reduce_loss(per_sample, reduction)


class MAALoss(nn.Module):
    """Module form of :func:`maa_loss` (CoT's MAA loss; stateless, see it for the formula).

    ``forward(features, partner_features, virtual_concept, concepts, lam)``.

    Example:
        >>> import torch
        >>> loss = MAALoss(temperature=0.1)
        >>> v, v2, c = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(v, v2, c, torch.randn(6, 8), 0.3).shape
        torch.Size([])
    """

    def __init__(self, temperature: float = 0.1, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        fn = "MAALoss"
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)

    def forward(
        self,
        features: torch.Tensor,
        partner_features: torch.Tensor,
        virtual_concept: torch.Tensor,
        concepts: torch.Tensor,
        lam: float | torch.Tensor,
    ) -> torch.Tensor:
        """Loss of the mixed features (B, D) against the virtual concepts (B, D) and all (P, D)."""
        return maa_loss(
            features,
            partner_features,
            virtual_concept,
            concepts,
            lam=lam,
            temperature=self.temperature,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
