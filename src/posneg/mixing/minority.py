"""MinorityMix: mixing partners drawn toward rare classes (minority attribute augmentation).

Kim, Lee, Park, Sohn. Hierarchical Visual Primitive Experts for Compositional Zero-Shot Learning
(CoT). ICCV 2023, arXiv 2308.04016: "minority attribute augmentation" (MAA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg.mixing import _common, _targets
from posneg.mixing._common import MixedBatch

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


@dataclass(frozen=True)
class MinorityMixParams:
    """One draw of MinorityMix's randomness.

    Attributes:
        lam: (B,) float32 in [0, 1], the weight of sample ``i`` itself.
        index: (B,) int64, the partner of each sample, drawn toward rare classes (not a
            permutation: a rare sample can be the partner of many).
    """

    lam: torch.Tensor
    index: torch.Tensor


def _check_labels(fn: str, labels: object, num_classes: int) -> torch.Tensor:
    t = _checks.check_tensor(fn, "labels", labels)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{fn}: labels must be an integer tensor of class ids; got {t.dtype}")
    if t.dim() != 1 or t.shape[0] < 1:
        raise ValueError(f"{fn}: labels must have shape (B,) with B >= 1; got {tuple(t.shape)}")
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{fn}: labels must be class ids in [0, {num_classes}); got values in [{lo}, {hi}]"
        )
    return t.long()


def _check_groups(fn: str, groups: object, labels: torch.Tensor) -> torch.Tensor:
    g = _checks.check_tensor(fn, "groups", groups)
    if g.dtype.is_floating_point or g.dtype == torch.bool or g.is_complex():
        raise TypeError(f"{fn}: groups must be an integer tensor; got {g.dtype}")
    if tuple(g.shape) != tuple(labels.shape):
        raise ValueError(
            f"{fn}: groups must have shape ({labels.shape[0]},) matching labels; "
            f"got {tuple(g.shape)}"
        )
    _checks.check_same_device(fn, "groups", g, "labels", labels)
    return g.long()


def _check_counts(
    fn: str, class_counts: object, num_classes: int, groups: torch.Tensor | None
) -> torch.Tensor:
    c = _checks.check_tensor(fn, "class_counts", class_counts)
    if c.is_complex() or c.dtype == torch.bool:
        raise TypeError(f"{fn}: class_counts must be a real tensor; got {c.dtype}")
    ok = c.dim() == 1 and c.shape[0] == num_classes
    ok = ok or (groups is not None and c.dim() == 2 and c.shape[1] == num_classes)
    if not ok:
        raise ValueError(
            f"{fn}: class_counts must have shape (K,) = ({num_classes},), or (G, K) when groups "
            f"are given; got {tuple(c.shape)}"
        )
    c64 = c.to(torch.float64)
    if not bool((torch.isfinite(c64) & (c64 >= 0)).all()):
        raise ValueError(f"{fn}: class_counts must be finite and >= 0")
    if c.dim() == 2 and groups is not None and int(groups.max()) >= c.shape[0]:
        raise ValueError(
            f"{fn}: groups must be < {c.shape[0]} (rows of class_counts); got {int(groups.max())}"
        )
    return c64


def minority_pair_probabilities(
    labels: torch.Tensor,
    *,
    num_classes: int,
    groups: torch.Tensor | None = None,
    class_counts: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The (B, B) matrix of partner probabilities ``P[i, j]`` of MinorityMix.

    For anchor ``i`` the candidates are the other samples of its group (all samples when
    ``groups`` is None) whose class differs from ``labels[i]``. As in CoT's sampler
    (``dataset.py``, ``sample_same_object2``), a class ``c`` among the candidates' classes is
    chosen with probability proportional to ``n(c)^(-1 / temperature)`` and then a candidate of
    that class uniformly::

        P[i, j] = n(c_j)^(-1/T) / sum_{c in C_i} n(c)^(-1/T) / m_i(c_j)

    where ``C_i`` is the set of candidate classes, ``m_i(c)`` the number of candidates of class
    ``c`` and ``n(c)`` the class frequency: ``class_counts[c]`` (K,), ``class_counts[g_i, c]``
    (G, K) (CoT uses dataset counts of (object, attribute) pairs), or, when ``class_counts`` is
    None, the in-batch count ``m_i(c)``. ``temperature = 1`` is CoT's inverse frequency;
    larger values interpolate toward a uniform choice of class, smaller ones sharpen toward the
    rarest class.

    Fallbacks (documented degenerate cases): an anchor with no candidate takes a uniformly
    random other member of its group (CoT does this when an object has one attribute only); an
    anchor alone in its group is its own partner (its mix is itself). The partner is therefore
    always in the anchor's group.

    Returns:
        (B, B) float64, rows summing to 1.
    """
    fn = "minority_pair_probabilities"
    k = _checks.check_int(fn, "num_classes", num_classes, min_value=1)
    y = _check_labels(fn, labels, k)
    t = _checks.check_positive(fn, "temperature", temperature)
    g = None if groups is None else _check_groups(fn, groups, y)
    counts = None if class_counts is None else _check_counts(fn, class_counts, k, g)
    return _pair_probabilities(y, k, g, counts, t)


def _pair_probabilities(
    y: torch.Tensor,
    k: int,
    g: torch.Tensor | None,
    counts: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    b = y.shape[0]
    dev = y.device
    eye = torch.eye(b, dtype=torch.bool, device=dev)
    group = torch.ones(b, b, dtype=torch.bool, device=dev) if g is None else g[:, None] == g
    peers = group & ~eye
    cand = peers & (y[:, None] != y[None, :])
    onehot = F.one_hot(y, k).to(torch.float64)  # (B, K)
    m = cand.to(torch.float64) @ onehot  # (B, K): candidates of class c for anchor i
    if counts is None:
        n = m
    elif counts.dim() == 1 or g is None:  # (G, K) counts come with groups (validated)
        n = counts.to(dev).reshape(-1, k)[:1].expand(b, k)
    else:
        n = counts.to(dev).index_select(0, g)
    present = m > 0
    if bool((present & (n <= 0)).any()):
        raise ValueError(
            "minority_pair_probabilities: class_counts must be > 0 for every class present in "
            "the batch"
        )
    logw = torch.where(present, -torch.log(n.clamp_min(1e-300)) / temperature, -torch.inf)
    logw = logw - logw.amax(1, keepdim=True).nan_to_num(neginf=0.0)
    class_p = torch.exp(logw)
    class_p = class_p / class_p.sum(1, keepdim=True).clamp_min(1e-300)  # (B, K) over C_i
    per_item = class_p / m.clamp_min(1.0)  # probability of each candidate of class c
    p = cand.to(torch.float64) * per_item.gather(1, y.unsqueeze(0).expand(b, b))
    # fallbacks: no candidate -> uniform over the group's other members -> itself
    empty = ~cand.any(1)
    uniform = peers.to(torch.float64) / peers.sum(1, keepdim=True).clamp_min(1)
    p = torch.where(empty.unsqueeze(1), uniform, p)
    alone = ~peers.any(1)
    return torch.where(alone.unsqueeze(1), eye.to(torch.float64), p)


def sample_minority_mix_params(
    labels: torch.Tensor,
    *,
    num_classes: int,
    groups: torch.Tensor | None = None,
    class_counts: torch.Tensor | None = None,
    temperature: float = 1.0,
    alpha: float = 1.0,
    per_sample: bool = False,
    generator: torch.Generator | None = None,
) -> MinorityMixParams:
    """Draw MinorityMix parameters: ``lam ~ Beta(alpha, alpha)`` and minority-biased partners.

    Partners are drawn independently per anchor from :func:`minority_pair_probabilities`
    (one ``torch.multinomial`` call over the (B, B) matrix), so rare classes are oversampled as
    partners. CoT draws ``lam ~ Beta(1, 1)`` once per batch (``per_sample=False``).

    Args:
        labels: (B,) int class ids (the attribute in CoT), B >= 1.
        num_classes: K.
        groups: optional (B,) int group ids (the object in CoT): partners share the group.
        class_counts: optional class frequencies, (K,) or (G, K) with groups; None: batch
            counts.
        temperature: T > 0 (1: inverse frequency; larger: toward uniform over classes).
        alpha: Beta concentration, > 0.
        per_sample: one lambda per sample (True) or per batch (False: CoT).
        generator: on labels' device (None: global RNG). Order: lambda, partners.

    Returns:
        :class:`MinorityMixParams` on labels' device.
    """
    fn = "sample_minority_mix_params"
    k = _checks.check_int(fn, "num_classes", num_classes, min_value=1)
    y = _check_labels(fn, labels, k)
    t = _checks.check_positive(fn, "temperature", temperature)
    a = _common.check_alpha(fn, alpha)
    g = None if groups is None else _check_groups(fn, groups, y)
    counts = None if class_counts is None else _check_counts(fn, class_counts, k, g)
    _common.check_generator(fn, generator, y.device)
    p = _pair_probabilities(y, k, g, counts, t)
    b = y.shape[0]
    lam = _common.draw_lambda(a, a, b, per_sample=per_sample, device=y.device, generator=generator)
    index = torch.multinomial(p, 1, generator=generator).squeeze(1)
    return MinorityMixParams(lam=lam, index=index)


def apply_minority_mix(
    x: torch.Tensor,
    labels: torch.Tensor | None,
    params: MinorityMixParams,
    *,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedBatch:
    """Mix each sample with its partner (deterministic; one fused pass, no batch loop).

    ``x_mixed[i] = lam[i] x[i] + (1 - lam[i]) x[j]`` and the same for the soft targets, with
    ``j = params.index[i]``. CoT mixes composed visual *features*; the paper's text mixes
    images: any (B, ...) tensor works here.

    Args:
        x: (B, ...) float or uint8 (images or features).
        labels: class ids (B,) int (needs ``num_classes``), soft labels (B, K), or None.
        params: from :func:`sample_minority_mix_params`.
        num_classes: K for class ids.
        label_smoothing: eps in [0, 1).

    Returns:
        :class:`MixedBatch` ``(x, targets)`` with targets (B, K) (None without labels).
    """
    fn = "apply_minority_mix"
    x = _common.check_images(fn, x, ranks=range(2, 9), layout="(B, ...)")
    if not isinstance(params, MinorityMixParams):
        raise TypeError(f"{fn}: params must be MinorityMixParams; got {type(params).__name__}")
    index = _common.check_index(fn, params.index, x)
    lam = _common.check_lam(fn, params.lam, x)
    k = _targets.check_num_classes(fn, num_classes)
    eps = _targets.check_label_smoothing(fn, label_smoothing)
    y = None
    if labels is not None:
        y = _targets.soft_targets(fn, labels, x, num_classes=k, label_smoothing=eps)
    x_mixed = _common.lerp_rows(x, index, lam)
    return MixedBatch(x_mixed, None if y is None else _targets.mix_targets(y, index, lam))


class MinorityMix(nn.Module):
    """Minority attribute augmentation (CoT, ICCV 2023) as a batch module.

    Kim, Lee, Park, Sohn. Hierarchical Visual Primitive Experts for Compositional Zero-Shot
    Learning. ICCV 2023, arXiv 2308.04016. Each sample is mixed MixUp-style with a partner from
    its group (CoT: the same object) whose class (CoT: the attribute) is drawn with probability
    proportional to ``n(c)^(-1/temperature)``, ``n`` the class frequency, then a sample of that
    class uniformly; ``lam ~ Beta(alpha, alpha)`` (CoT: Beta(1, 1), one per batch); targets are
    ``lam y_i + (1 - lam) y_j``. Rare classes are thereby oversampled as mixing partners. The
    official code mixes composed features after the backbone, the paper describes mixing
    images: pass whichever tensor you want mixed.

    Frequencies are the in-batch counts, or dataset counts given as ``class_counts``
    ((K,), or (G, K) per group; kept as a buffer so ``.to(device)`` moves them).

    Args:
        num_classes: K (the labels' classes).
        alpha: Beta concentration, > 0 (default 1, CoT's).
        temperature: T > 0 (default 1: inverse frequency; larger: toward uniform over classes).
        per_sample: one lambda per sample (True) or per batch (False: CoT).
        label_smoothing: eps in [0, 1).
        class_counts: optional dataset class frequencies.

    Shapes:
        ``forward(x, labels, *, groups=None, generator=None)``: x (B, ...) float or uint8,
        labels (B,) int, groups (B,) int or None. Returns :class:`MixedBatch` ``(x, targets)``
        with targets (B, K). Degenerate batches: see :func:`minority_pair_probabilities`
        (B = 1 or a sample alone in its group: mixed with itself, unchanged).

    Example:
        >>> import torch
        >>> from posneg.mixing import MinorityMix
        >>> labels = torch.tensor([0, 0, 0, 0, 1, 2])
        >>> out = MinorityMix(num_classes=3)(torch.rand(6, 8), labels,
        ...                                  generator=torch.Generator().manual_seed(0))
        >>> out.targets.shape
        torch.Size([6, 3])
    """

    class_counts: torch.Tensor | None

    def __init__(
        self,
        num_classes: int,
        *,
        alpha: float = 1.0,
        temperature: float = 1.0,
        per_sample: bool = False,
        label_smoothing: float = 0.0,
        class_counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        fn = "MinorityMix"
        self.num_classes = _checks.check_int(fn, "num_classes", num_classes, min_value=1)
        self.alpha = _common.check_alpha(fn, alpha)
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.per_sample = bool(per_sample)
        self.label_smoothing = _targets.check_label_smoothing(fn, label_smoothing)
        if class_counts is not None:
            c = _checks.check_tensor(fn, "class_counts", class_counts)
            if c.dim() not in (1, 2) or c.shape[-1] != self.num_classes:
                raise ValueError(
                    f"{fn}: class_counts must have shape (K,) or (G, K) with K={self.num_classes}; "
                    f"got {tuple(c.shape)}"
                )
            class_counts = c.detach().to(torch.float64).clone()
        self.register_buffer("class_counts", class_counts)

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        *,
        groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MixedBatch:
        """Draw minority-biased partners and mix (see the class docstring for shapes)."""
        fn = "MinorityMix"
        x = _common.check_images(fn, x, ranks=range(2, 9), layout="(B, ...)")
        y = _check_labels(fn, labels, self.num_classes)
        if y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{fn}: labels must have shape ({x.shape[0]},) matching x {tuple(x.shape)}; "
                f"got {tuple(y.shape)}"
            )
        _checks.check_same_device(fn, "labels", y, "x", x)
        params = sample_minority_mix_params(
            y,
            num_classes=self.num_classes,
            groups=groups,
            class_counts=self.class_counts,
            temperature=self.temperature,
            alpha=self.alpha,
            per_sample=self.per_sample,
            generator=generator,
        )
        return apply_minority_mix(
            x,
            y,
            params,
            num_classes=self.num_classes,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        counts = "batch" if self.class_counts is None else tuple(self.class_counts.shape)
        return (
            f"num_classes={self.num_classes}, alpha={self.alpha}, "
            f"temperature={self.temperature}, per_sample={self.per_sample}, "
            f"label_smoothing={self.label_smoothing}, class_counts={counts}"
        )
