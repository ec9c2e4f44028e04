"""Captions from real images: composed two-digit images and a digit composed-image-retrieval task.

Built from scikit-learn's bundled 8x8 digits (:func:`posneg.data.digits.load_digits`, pixels in
[0, 1]), nothing downloaded.

- :func:`make_composed_digits`: images ``[a | b]`` (1, 8, 16) with the relation caption
  ``"a left b"`` and ``K = 4`` hard negative captions per sample, **sample-major** (row
  ``4 i + k`` is negative k of sample i, DeGLA's layout): the swap ``"b left a"``, the
  replacements ``"c left b"`` and ``"a left c"``, and the swapped replacement ``"b left c"``
  (c drawn != a, b). Also single-digit images ``[d | blank]`` / ``[blank | d]`` with the
  prompt ``"d"`` for zero-shot classification.
- :func:`make_digit_cir`: (reference, modification text, target) triplets: the modification is
  a transform name (rotate +-15 degrees, shift in four directions, thicken, invert), the
  target is the transformed reference and the gallery is every transformed image, so each
  query has exactly one correct target. Each gallery image has a "caption" (its class and
  transform) for SPN4CIR-style synthetic triplets.

Texts are token id tensors over the fixed vocabulary :data:`VOCAB` (0 is padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "TRANSFORMS",
    "VOCAB",
    "ComposedDigits",
    "DigitCIR",
    "apply_transform",
    "digit_prompts",
    "make_composed_digits",
    "make_digit_cir",
    "tokenize",
]

#: Digit-relation, transform and template words; index 0 is padding.
TRANSFORMS: tuple[str, ...] = (
    "rotate_left",
    "rotate_right",
    "shift_left",
    "shift_right",
    "shift_up",
    "shift_down",
    "thicken",
    "invert",
)
VOCAB: tuple[str, ...] = (
    "<pad>",
    *(str(d) for d in range(10)),
    "left",
    "digit",
    "instead",
    "of",
    "unlike",
    "i",
    "want",
    *TRANSFORMS,
)
_IDS = {w: i for i, w in enumerate(VOCAB)}


def tokenize(texts: list[list[str]] | list[str], *, max_len: int = 8) -> torch.Tensor:
    """(N, max_len) int64 token ids, right-padded with 0; strings are split on spaces.

    Raises:
        ValueError: an unknown word or a text longer than ``max_len``.
    """
    rows = [t.split() if isinstance(t, str) else list(t) for t in texts]
    out = torch.zeros(len(rows), max_len, dtype=torch.int64)
    for r, words in enumerate(rows):
        if len(words) > max_len:
            raise ValueError(f"tokenize: text {words!r} has more than max_len={max_len} words")
        for c, w in enumerate(words):
            if w not in _IDS:
                raise ValueError(f"tokenize: unknown word {w!r}; the vocabulary is VOCAB")
            out[r, c] = _IDS[w]
    return out


def _digits(seed: int, test_fraction: float) -> tuple[np.ndarray, ...]:
    from posneg.data.digits import load_digits  # sklearn is imported lazily there

    ds = load_digits(test_fraction=test_fraction, seed=seed)
    shape = (-1, 8, 8)
    return (
        ds.x_train.reshape(shape).astype(np.float32),
        ds.y_train.astype(np.int64),
        ds.x_test.reshape(shape).astype(np.float32),
        ds.y_test.astype(np.int64),
    )


@dataclass(frozen=True)
class ComposedDigits:
    """One side (train or test) of the composed two-digit task.

    Attributes:
        images: (N, 1, 8, 16) float32 ``[a | b]`` images in [0, 1].
        left, right: (N,) int64 digits a and b (a != b).
        captions: (N, L) tokens of ``"a left b"``.
        unordered_captions: (N, L) tokens of ``"a b"`` or ``"b a"`` (a fair coin per sample):
            web-style captions that name the content but not the relation (for pretraining).
        negatives: (N * 4, L) tokens, sample-major: swap, replace-left, replace-right,
            swapped replacement.
        single_images: (M, 1, 8, 16) single-digit images (the digit on either side).
        single_labels: (M,) int64 their digits.
    """

    images: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    captions: torch.Tensor
    unordered_captions: torch.Tensor
    negatives: torch.Tensor
    single_images: torch.Tensor
    single_labels: torch.Tensor


def digit_prompts(max_len: int = 8) -> torch.Tensor:
    """Tokens of the single-digit prompts ``"0"`` .. ``"9"`` (10, max_len)."""
    return tokenize([str(d) for d in range(10)], max_len=max_len)


def _compose(
    x: np.ndarray, y: np.ndarray, n: int, g: torch.Generator, max_len: int
) -> ComposedDigits:
    i = torch.randint(len(y), (n,), generator=g)
    j = torch.randint(len(y), (n,), generator=g)
    yt = torch.as_tensor(y)
    keep = yt[i] != yt[j]
    i, j = i[keep], j[keep]
    a, b = yt[i], yt[j]
    xt = torch.as_tensor(x)
    images = torch.cat([xt[i], xt[j]], dim=2)[:, None]
    # replacement digit c != a, b: offset in 1..8 from a, skipping b
    c = (a + torch.randint(1, 9, (len(a),), generator=g)) % 10
    c = torch.where(c == b, (c + 1) % 10, c)
    c = torch.where(c == a, (c + 1) % 10, c)
    c = torch.where(c == b, (c + 1) % 10, c)
    flip = torch.rand(len(a), generator=g) < 0.5
    caps, negs, bags = [], [], []
    for aa, bb, cc, ff in zip(a.tolist(), b.tolist(), c.tolist(), flip.tolist(), strict=True):
        caps.append(f"{aa} left {bb}")
        bags.append(f"{bb} {aa}" if ff else f"{aa} {bb}")
        negs += [f"{bb} left {aa}", f"{cc} left {bb}", f"{aa} left {cc}", f"{bb} left {cc}"]
    blank = torch.zeros_like(xt)
    singles = torch.cat([torch.cat([xt, blank], 2), torch.cat([blank, xt], 2)])[:, None]
    return ComposedDigits(
        images=images,
        left=a,
        right=b,
        captions=tokenize(caps, max_len=max_len),
        unordered_captions=tokenize(bags, max_len=max_len),
        negatives=tokenize(negs, max_len=max_len),
        single_images=singles,
        single_labels=torch.cat([yt, yt]),
    )


def make_composed_digits(
    *,
    n_train: int = 2000,
    n_test: int = 1000,
    seed: int = 0,
    split_seed: int = 0,
    test_fraction: float = 0.3,
    max_len: int = 8,
) -> tuple[ComposedDigits, ComposedDigits]:
    """Train and test composed two-digit sets, from disjoint digit images.

    Pairs are drawn with a ``torch.Generator`` seeded with ``seed`` (pairs with a == b are
    dropped, so slightly fewer than ``n_*`` samples remain); the digit images are split by
    :func:`posneg.data.digits.load_digits` with ``split_seed``.

    Example:
        >>> train, test = make_composed_digits(n_train=50, n_test=20)
        >>> train.images.shape[1:], train.negatives.shape[0] == 4 * train.images.shape[0]
        (torch.Size([1, 8, 16]), True)
    """
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"make_composed_digits: {name} must be an int >= 2; got {v!r}")
    if max_len < 3:
        raise ValueError(f"make_composed_digits: max_len must be >= 3; got {max_len!r}")
    x_tr, y_tr, x_te, y_te = _digits(split_seed, test_fraction)
    g = torch.Generator().manual_seed(seed)
    return _compose(x_tr, y_tr, n_train, g, max_len), _compose(x_te, y_te, n_test, g, max_len)


def apply_transform(images: torch.Tensor, name: str) -> torch.Tensor:
    """One of :data:`TRANSFORMS` on (N, 8, 8) images in [0, 1] (deterministic)."""
    if name in ("rotate_left", "rotate_right"):
        a = math.radians(15.0 if name == "rotate_left" else -15.0)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
        theta = theta.to(images.dtype).expand(images.shape[0], 2, 3)
        grid = F.affine_grid(theta, [images.shape[0], 1, 8, 8], align_corners=False)
        return F.grid_sample(images[:, None], grid, align_corners=False)[:, 0].clamp(0, 1)
    shifts = {
        "shift_left": (0, -2),
        "shift_right": (0, 2),
        "shift_up": (-2, 0),
        "shift_down": (2, 0),
    }
    if name in shifts:
        dy, dx = shifts[name]
        out = torch.zeros_like(images)
        h, w = images.shape[1:]
        ys, yd = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
        xs, xd = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
        out[:, yd, xd] = images[:, ys, xs]
        return out
    if name == "thicken":
        return F.max_pool2d(images[:, None], 3, stride=1, padding=1)[:, 0]
    if name == "invert":
        return 1.0 - images
    raise ValueError(f"apply_transform: name must be one of {', '.join(TRANSFORMS)}; got {name!r}")


@dataclass(frozen=True)
class DigitCIR:
    """The digit composed-image-retrieval task.

    Attributes:
        references: (R, 64) float32 reference images (flattened 8x8).
        reference_labels: (R,) int64 their digits.
        gallery: (R * T, 64) transformed images; row ``t * R + r`` is transform t of reference r.
        gallery_labels: (R * T,) digits; gallery_transforms: (R * T,) transform ids.
        query_reference, query_transform, query_target: (Q,) int64 triplets (all R * T).
        train_queries, test_queries: (Q_train,), (Q_test,) indices into the triplets; the test
            side uses references never seen in training queries.
    """

    references: torch.Tensor
    reference_labels: torch.Tensor
    gallery: torch.Tensor
    gallery_labels: torch.Tensor
    gallery_transforms: torch.Tensor
    query_reference: torch.Tensor
    query_transform: torch.Tensor
    query_target: torch.Tensor
    train_queries: torch.Tensor
    test_queries: torch.Tensor

    def modification_tokens(self, queries: torch.Tensor, *, max_len: int = 8) -> torch.Tensor:
        """Tokens of the real modification texts (the transform name) of ``queries``."""
        names = [[TRANSFORMS[int(t)]] for t in self.query_transform[queries]]
        return tokenize(names, max_len=max_len)

    def caption(self, gallery_index: int) -> list[str]:
        """The "caption" of a gallery image: ``[digit, transform]``."""
        return [
            str(int(self.gallery_labels[gallery_index])),
            TRANSFORMS[int(self.gallery_transforms[gallery_index])],
        ]


def make_digit_cir(
    *, n_references: int = 400, test_fraction: float = 0.5, seed: int = 0
) -> DigitCIR:
    """Digit CIR triplets from ``n_references`` digit images (drawn with ``seed``).

    Example:
        >>> task = make_digit_cir(n_references=20)
        >>> task.gallery.shape, int(task.query_target[5]) == 5
        (torch.Size([160, 64]), True)
    """
    if isinstance(n_references, bool) or not isinstance(n_references, int) or n_references < 4:
        raise ValueError(f"make_digit_cir: n_references must be an int >= 4; got {n_references!r}")
    x_tr, y_tr, x_te, y_te = _digits(0, 0.25)
    x = torch.as_tensor(np.concatenate([x_tr, x_te]))
    y = torch.as_tensor(np.concatenate([y_tr, y_te]))
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(y), generator=g)[:n_references]
    refs, labels = x[pick], y[pick]
    r, t = len(pick), len(TRANSFORMS)
    gallery = torch.cat([apply_transform(refs, name) for name in TRANSFORMS]).reshape(r * t, 64)
    q_ref = torch.arange(r).repeat(t)
    q_tr = torch.arange(t).repeat_interleave(r)
    order = torch.randperm(r, generator=g)
    n_test = max(1, min(r - 1, round(test_fraction * r)))
    test_refs = torch.zeros(r, dtype=torch.bool)
    test_refs[order[:n_test]] = True
    is_test = test_refs[q_ref]
    return DigitCIR(
        references=refs.reshape(r, 64),
        reference_labels=labels,
        gallery=gallery,
        gallery_labels=labels.repeat(t),
        gallery_transforms=q_tr.clone(),
        query_reference=q_ref,
        query_transform=q_tr,
        query_target=torch.arange(r * t),
        train_queries=torch.nonzero(~is_test).flatten(),
        test_queries=torch.nonzero(is_test).flatten(),
    )
