"""MinorityMix: mixing partners drawn toward rare classes (minority attribute augmentation).

Kim, Lee, Park, Sohn. Hierarchical Visual Primitive Experts for Compositional Zero-Shot Learning
(CoT). ICCV 2023, arXiv 2308.04016: "minority attribute augmentation" (MAA).

Two forms of the partner draw:

- :class:`MinorityPartnerSampler` is CoT's own: every partner is drawn from the *whole training
  set* (``dataset.py::sample_same_object2``), so an object's rarest attribute is picked even
  when no sample of it is in the batch. As a ``DataLoader`` ``batch_sampler`` it yields each
  batch doubled, anchors then partners (``[x; x']`` of CoT's MAA step); the MAA objective on
  the composed features is :func:`posneg.losses.maa.maa_loss`.
- :class:`MinorityMix` is an in-batch approximation: partners are drawn among the other samples
  of the same batch, with dataset or batch frequencies. It needs no access to the data set, but
  it can only pick classes present in the batch (labels [0, 0, 0, 1] with dataset counts
  [1000, 10, 1]: class 2 is never a partner, where CoT picks it for about 91% of class-0
  anchors).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler

from posneg import _checks, _rng
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
    """Minority attribute augmentation (CoT, ICCV 2023) as a batch module: in-batch partners.

    This is a documented approximation of CoT's sampler: partners are drawn among the samples
    of the same batch, so a class absent from the batch is never a partner even when it is the
    rarest of the data set. CoT itself draws partners from the whole training set; that is
    :class:`MinorityPartnerSampler` (tested: labels [0, 0, 0, 1] with counts [1000, 10, 1]).

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


# ---------------------------------------------------------------------------------------------
# CoT's dataset-level partner sampler
# ---------------------------------------------------------------------------------------------


def _check_id_tensor(fn: str, name: str, x: object) -> torch.Tensor:
    t = _checks.check_tensor(fn, name, x)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{fn}: {name} must be an integer tensor; got {t.dtype}")
    if t.dim() != 1 or t.shape[0] < 1:
        raise ValueError(f"{fn}: {name} must have shape (N,) with N >= 1; got {tuple(t.shape)}")
    if int(t.min()) < 0:
        raise ValueError(f"{fn}: {name} must be >= 0; got a minimum of {int(t.min())}")
    return t.detach().to(device="cpu", dtype=torch.int64)


class MinorityPartnerSampler(Sampler[list[int]]):
    """CoT's partner sampler over the whole training set, as a ``DataLoader`` batch sampler.

    Kim, Lee, Park, Sohn. *Hierarchical Visual Primitive Experts for Compositional Zero-Shot
    Learning* (CoT). ICCV 2023, arXiv 2308.04016. Official code: HanjaeKim98/CoT, commit
    258476ab926ee0b24e27101182727f99363f06aa, ``dataset.py::sample_same_object2``, run for
    every training item in ``CompositionDataset.__getitem__``.

    For an anchor with attribute ``a`` and object ``o``, with ``n(o, a')`` the number of
    training items of the pair (o, a'):

    1. if object ``o`` has a single attribute in the training set, the partner is a uniformly
       random training item of ``o`` (possibly the anchor itself), as the official code;
    2. otherwise an attribute ``a' != a`` among those ``o`` has is drawn with probability
       ``(1 / n(o, a')) / sum_{b != a, n(o, b) > 0} 1 / n(o, b)``, and the partner is a
       uniformly random training item of the pair (o, a'). The official code reaches the same
       distribution by rejection (random items of ``o`` until one has ``a'``); here the item is
       drawn directly from the pair's members, so a rare attribute costs nothing (the card's
       subtle point 2).

    Weights are per object, not global (the card's subtle point 4). The partner is drawn from
    the whole training set, not from the batch: this is what tells CoT from the in-batch
    :class:`MinorityMix` (with one object and attribute counts [1000, 10, 1], an anchor of
    attribute 0 gets attribute 2 with probability 1/1.1, about 91%, whatever the batch holds).

    As a batch sampler it yields, per batch, the ``B`` anchor indices (a random permutation of
    the training set cut into batches, like ``RandomSampler`` + ``BatchSampler``) followed by
    their ``B`` partners: a list of ``2B`` indices, so ``DataLoader(dataset,
    batch_sampler=sampler)`` returns CoT's doubled batch ``[x; x']`` (anchors first; split it
    with ``.chunk(2)``). :meth:`draw` gives the partners of any anchors directly.

    Randomness: ``generator`` (the attribute, settable; CPU) drives every epoch's permutation
    and partner draws; with ``None`` each epoch takes one seed from torch's global RNG, as
    ``RandomSampler`` does. Per epoch the order of draws is: the permutation, then per batch
    the attributes (one ``torch.multinomial``) and the uniforms for the items (one
    ``torch.rand``).

    Args:
        attributes: (N,) int attribute id of every training item (CoT: ``attr2idx``).
        objects: (N,) int object id of every training item (CoT: ``obj2idx``).
        batch_size: anchors per batch, >= 1 (the loader's batch has ``2 * batch_size`` rows).
        drop_last: drop the last batch when it has fewer than ``batch_size`` anchors.
        generator: a CPU ``torch.Generator`` or ``None``.

    Raises:
        TypeError: non-integer id tensors, a non-int batch size, a non-bool drop_last, a bad
            generator.
        ValueError: ids that are not (N,) with N >= 1 or are negative, attributes and objects
            of different lengths, batch_size < 1.

    Example:
        >>> import torch
        >>> attrs = torch.tensor([0] * 1000 + [1] * 10 + [2])  # one object, long-tailed
        >>> sampler = MinorityPartnerSampler(attrs, torch.zeros(1011, dtype=torch.long), 4)
        >>> g = torch.Generator().manual_seed(0)
        >>> partners = sampler.draw(torch.zeros(10_000, dtype=torch.long), generator=g)
        >>> rate = (attrs[partners] == 2).double().mean().item()  # anchor 0 has attribute 0
        >>> round(rate, 2)
        0.91
    """

    def __init__(
        self,
        attributes: torch.Tensor,
        objects: torch.Tensor,
        batch_size: int,
        *,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        fn = "MinorityPartnerSampler"
        attrs = _check_id_tensor(fn, "attributes", attributes)
        objs = _check_id_tensor(fn, "objects", objects)
        if attrs.shape != objs.shape:
            raise ValueError(
                f"{fn}: objects must have shape {tuple(attrs.shape)} matching attributes; "
                f"got {tuple(objs.shape)}"
            )
        self.batch_size = _checks.check_int(fn, "batch_size", batch_size, min_value=1)
        self.drop_last = _checks.check_bool(fn, "drop_last", drop_last)
        _checks.check_generator(fn, generator, torch.device("cpu"))
        self.generator = generator
        self.attributes, self.objects = attrs, objs
        self.num_items = int(attrs.shape[0])
        self.num_attributes = int(attrs.max()) + 1
        num_objects = int(objs.max()) + 1
        pair = objs * self.num_attributes + attrs
        # items sorted by (object, attribute): the members of a pair and of an object are
        # contiguous, so a uniform member is start + floor(u * count)
        self._by_pair = torch.argsort(pair, stable=True)
        pair_counts = torch.bincount(pair, minlength=num_objects * self.num_attributes)
        self._pair_counts = pair_counts.reshape(num_objects, self.num_attributes)
        self._pair_starts = (torch.cumsum(pair_counts, 0) - pair_counts).reshape_as(
            self._pair_counts
        )
        self._object_counts = self._pair_counts.sum(1)
        self._object_starts = torch.cumsum(self._object_counts, 0) - self._object_counts

    def probabilities(self, anchor: int) -> torch.Tensor:
        """The (N,) float64 probability of every training item being the partner of ``anchor``."""
        fn = "MinorityPartnerSampler.probabilities"
        i = _checks.check_int(fn, "anchor", anchor, min_value=0)
        if i >= self.num_items:
            raise ValueError(f"{fn}: anchor must be < num_items={self.num_items}; got {i}")
        a, o = int(self.attributes[i]), int(self.objects[i])
        counts = self._pair_counts[o].to(torch.float64)
        same_object = self.objects == o
        out = torch.zeros(self.num_items, dtype=torch.float64)
        if int((counts > 0).sum()) == 1:
            out[same_object] = 1.0 / float(counts.sum())
            return out
        w = torch.where(counts > 0, 1.0 / counts.clamp_min(1.0), torch.zeros_like(counts))
        w[a] = 0.0
        w = w / w.sum()
        per_item = w / counts.clamp_min(1.0)  # uniform among the pair's members
        out[same_object] = per_item[self.attributes[same_object]]
        return out

    def draw(
        self, index: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Partners of the training items ``index`` (B,) int: (B,) int64 training indices (CPU).

        Vectorised over the anchors (one ``multinomial`` and one ``rand``), no rejection loop.
        ``generator``: a CPU generator or ``None`` (global RNG).
        """
        fn = "MinorityPartnerSampler.draw"
        idx = _checks.check_tensor(fn, "index", index)
        if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
            raise TypeError(f"{fn}: index must be an integer tensor; got {idx.dtype}")
        if idx.dim() != 1:
            raise ValueError(f"{fn}: index must have shape (B,); got {tuple(idx.shape)}")
        _checks.check_generator(fn, generator, torch.device("cpu"))
        idx = idx.detach().to(device="cpu", dtype=torch.int64)
        if idx.numel() == 0:
            return idx.clone()
        if int(idx.min()) < 0 or int(idx.max()) >= self.num_items:
            raise ValueError(
                f"{fn}: index must be in [0, {self.num_items}); got values in "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )
        a, o = self.attributes[idx], self.objects[idx]
        counts = self._pair_counts[o].to(torch.float64)  # (B, A)
        present = counts > 0
        weights = torch.where(present, 1.0 / counts.clamp_min(1.0), torch.zeros_like(counts))
        weights.scatter_(1, a.unsqueeze(1), 0.0)
        single = ~(weights > 0).any(1)  # the object has one attribute in the training set
        weights[single] = present[single].to(torch.float64)  # any valid row; result unused
        chosen = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        u = torch.rand(idx.shape[0], dtype=torch.float64, generator=generator)
        pair_n = self._pair_counts[o, chosen]
        pair_pos = self._pair_starts[o, chosen] + _uniform_below(u, pair_n)
        obj_pos = self._object_starts[o] + _uniform_below(u, self._object_counts[o])
        return self._by_pair[torch.where(single, obj_pos, pair_pos)]

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return math.ceil(self.num_items / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        gen = _rng.epoch_generator(self.generator)
        order = torch.randperm(self.num_items, generator=gen)
        stop = len(self) * self.batch_size if self.drop_last else self.num_items
        for start in range(0, stop, self.batch_size):
            anchors = order[start : start + self.batch_size]
            yield torch.cat([anchors, self.draw(anchors, generator=gen)]).tolist()

    def __repr__(self) -> str:
        return (
            f"MinorityPartnerSampler(num_items={self.num_items}, batch_size={self.batch_size}, "
            f"drop_last={self.drop_last})"
        )


def _uniform_below(u: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``floor(u * n)`` clamped into ``[0, n - 1]`` (int64), for ``u`` in [0, 1) and n >= 1."""
    return (u * n.to(torch.float64)).floor().long().clamp(min=0).minimum(n.clamp_min(1) - 1)
