"""ASPIRE: find spurious features by a flip test, then keep edited images without them.

Ghosh, Evuru, Kumar, Tyagi, Singh, Chowdhury, Manocha, "ASPIRE: Language-Guided Data
Augmentation for Improving Robustness Against Spurious Correlations", arXiv 2308.10103 (2023).

1. A language step (the paper: captions + GPT-4) lists candidate features per image: the
   ``(N, F)`` bool ``occurs`` over ``features`` (phrases).
2. **Flip test** (:func:`flip_test`): for each image the classifier gets right and each feature it
   shows, ``edit(images, feature)`` removes the feature (the paper: GroundingDINO + SAM + LaMa for
   objects, InstructPix2Pix for backgrounds); the feature is spurious for that image when the
   prediction then differs from the label. The edited images of flips are kept.
3. **Scores** (:func:`spurious_scores`): per class ``c`` and feature ``f``,
   ``score_{c,f} = #flips_{c,f} / #occurrences_{c,f}``.
4. **Merging** (:func:`merge_phrases`): near-duplicate phrases form one group when the
   bag-of-words cosine of their normalised forms is ``>= 0.7`` (greedy: a phrase joins the first
   group holding a similar phrase). A group's score is the **sum** of its phrases' scores and its
   count the sum of their flips; groups are sorted by ``(score, count, index)`` descending.
5. **Cap** (:func:`image_cap`): at most 15 edited images from the top group, 10 from each next
   one, 35 per class, drawn at random without replacement.

The kept images (spurious feature removed) are what the paper personalises Stable Diffusion on
(textual inversion) before generating 100 images per class; that generator is the caller's.

Transcribed from ``Sreyan88/ASPIRE`` at commit ``34f9107bdc4945c4cd9bcc1df66c014e7c854210``,
``Grounded-Segment-Anything/Inpaint-Anything/parse_top_k_classes.py`` (``are_phrases_same_object``,
``find_similar_items``, ``get_collapsed_categories``, the ``temp_score`` sum, the ``(score,
count, idx)`` sort, the 15/10/35 loop) and ``spurious_objects_detection.py`` (only correctly
classified images are probed). Deliberate differences, each tested:

- The code normalises a phrase with nltk's ``PorterStemmer().stem`` then
  ``WordNetLemmatizer().lemmatize`` on the whole phrase (only its last word changes). nltk is not
  a dependency: the default :func:`normalize_phrase` lowercases and strips a plural suffix from
  the last word (Porter step 1a plus ``-es`` after ``ch``/``sh``/``x``/``s``/``z``); pass
  ``normalize=PorterStemmer().stem`` for the code's exact behaviour.
- The cap loop of the code copies ``rand_list``, a name it never defines (a ``NameError``); the
  evident intent, ``random.sample(images, temp)``, is what :class:`ASPIRESelector` draws.
- The code lists flipped objects in ``os.listdir`` order before merging; here features keep
  their order in ``features`` (sorted by flip count, stable), so merging is deterministic.

Example:
    >>> merge_phrases(["red patch", "red patches", "frame"])
    [[0, 1], [2]]
    >>> image_cap([20, 12, 30, 4])
    [15, 10, 10, 0]
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from posneg import _checks

__all__ = [
    "ASPIRESelection",
    "ASPIRESelector",
    "FlipResult",
    "flip_test",
    "image_cap",
    "merge_phrases",
    "normalize_phrase",
    "rank_feature_groups",
    "spurious_scores",
]

CITATION = """
@article{ghosh2023aspire,
  title   = {{ASPIRE}: Language-Guided Data Augmentation for Improving Robustness Against
             Spurious Correlations},
  author  = {Ghosh, Sreyan and Evuru, Chandra Kiran Reddy and Kumar, Sonal and Tyagi, Utkarsh
             and Singh, S. Sakshi and Chowdhury, Sanjoy and Manocha, Dinesh},
  journal = {arXiv preprint arXiv:2308.10103},
  year    = {2023}
}
"""

_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn CountVectorizer's default token pattern

#: ``predict(images) -> (N, C) logits or (N,) labels``.
Predict = Callable[[torch.Tensor], torch.Tensor]
#: ``edit(images, feature) -> images`` with the feature removed (same shape).
Edit = Callable[[torch.Tensor, str], torch.Tensor]


def normalize_phrase(phrase: str) -> str:
    """Lowercase; strip a plural suffix from the last word (a light stand-in for Porter + lemma)."""
    words = phrase.lower().split()
    if not words:
        return ""
    w = words[-1]
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("es") and re.search(r"(ch|sh|x|s|z)es$", w):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        w = w[:-1]
    return " ".join([*words[:-1], w])


def _cosine(a: str, b: str) -> float:
    ca, cb = Counter(_TOKEN.findall(a.lower())), Counter(_TOKEN.findall(b.lower()))
    dot = sum(ca[t] * cb[t] for t in ca)
    na = math.sqrt(sum(v * v for v in ca.values()))
    nb = math.sqrt(sum(v * v for v in cb.values()))
    return dot / (na * nb) if na and nb else 0.0


def merge_phrases(
    phrases: Sequence[str],
    *,
    threshold: float = 0.7,
    normalize: Callable[[str], str] = normalize_phrase,
) -> list[list[int]]:
    """Greedy groups of near-duplicate phrases (indices into ``phrases``, in input order).

    Phrase ``i`` joins the first existing group with a member ``j`` such that the bag-of-words
    cosine of ``normalize(p_i)`` and ``normalize(p_j)`` is ``>= threshold``; else it opens a group.
    """
    fn = "merge_phrases"
    if isinstance(phrases, str) or not all(isinstance(p, str) for p in phrases):
        raise TypeError(f"{fn}: phrases must be a sequence of str")
    threshold = _checks.check_range(fn, "threshold", threshold, 0.0, 1.0)
    keys = [normalize(p) for p in phrases]
    groups: list[list[int]] = []
    for i, key in enumerate(keys):
        for grp in groups:
            if any(_cosine(key, keys[j]) >= threshold for j in grp):
                grp.append(i)
                break
        else:
            groups.append([i])
    return groups


def image_cap(
    counts: Sequence[int], *, first: int = 15, rest: int = 10, total: int = 35
) -> list[int]:
    """Images taken from each ranked group: ``min(count, first)`` from the top group,
    ``min(count, rest)`` from each next one, until ``total`` per class."""
    fn = "image_cap"
    first = _checks.check_int(fn, "first", first, min_value=0)
    rest = _checks.check_int(fn, "rest", rest, min_value=0)
    total = _checks.check_int(fn, "total", total, min_value=0)
    taken, out = 0, []
    for i, cnt in enumerate(counts):
        cnt = _checks.check_int(fn, "counts[i]", cnt, min_value=0)
        k = min(cnt, first if i == 0 else rest, max(total - taken, 0))
        out.append(k)
        taken += k
    return out


@dataclass(frozen=True)
class FlipResult:
    """The flip test's outcome.

    Attributes:
        correct: ``(N,)`` bool, the classifier was right before editing.
        occurs: ``(N, F)`` bool, as given.
        flipped: ``(N, F)`` bool, the edit of feature ``f`` changed a correct prediction.
        edited: per feature, the edited images of its flips ``(n_f, ...)``.
        edited_index: per feature, their sample indices ``(n_f,)`` int64.
    """

    correct: torch.Tensor
    occurs: torch.Tensor
    flipped: torch.Tensor
    edited: list[torch.Tensor]
    edited_index: list[torch.Tensor]


def _labels_of(out: torch.Tensor) -> torch.Tensor:
    return out.argmax(-1) if out.dim() == 2 else out


def flip_test(
    predict: Predict,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    features: Sequence[str],
    occurs: torch.Tensor,
    edit: Edit,
) -> FlipResult:
    """Edit each feature out of the correctly classified images that show it; record flips.

    Args:
        predict: the classifier, ``predict(x) -> (N, C)`` logits or ``(N,)`` labels.
        images: ``(N, ...)`` images.
        labels: ``(N,)`` int labels.
        features: the ``F`` candidate phrases (the language step's output).
        occurs: ``(N, F)`` bool, image ``i`` shows feature ``f``.
        edit: ``edit(images, feature) -> images`` removing the feature.

    Raises:
        ValueError: shapes disagree, or ``edit`` changes the shape.
    """
    fn = "flip_test"
    _checks.check_float(fn, "images", images)
    _checks.check_labels(fn, "labels", labels, images.shape[0], images.device)
    _checks.check_tensor(fn, "occurs", occurs)
    f = len(features)
    if occurs.dtype != torch.bool or tuple(occurs.shape) != (images.shape[0], f):
        raise ValueError(
            f"{fn}: occurs must be a bool tensor of shape ({images.shape[0]}, {f}); got "
            f"{occurs.dtype} {tuple(occurs.shape)}"
        )
    if not callable(predict) or not callable(edit):
        raise TypeError(f"{fn}: predict and edit must be callable")
    correct = _labels_of(predict(images)).to(labels.device) == labels
    flipped = torch.zeros_like(occurs)
    edited, edited_index = [], []
    for j, feat in enumerate(features):
        idx = torch.nonzero(correct & occurs[:, j]).flatten()
        ed = edit(images[idx], feat) if idx.numel() else images[idx]
        if not isinstance(ed, torch.Tensor) or ed.shape != images[idx].shape:
            raise ValueError(f"{fn}: edit must return images of shape {tuple(images[idx].shape)}")
        flip = (
            _labels_of(predict(ed)).to(labels.device) != labels[idx]
            if idx.numel()
            else torch.zeros(0, dtype=torch.bool, device=labels.device)
        )
        flipped[idx[flip], j] = True
        edited.append(ed[flip])
        edited_index.append(idx[flip])
    return FlipResult(correct, occurs, flipped, edited, edited_index)


def spurious_scores(
    flipped: torch.Tensor, occurs: torch.Tensor, labels: torch.Tensor, *, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, flips)``, both ``(C, F)``: ``flips_{c,f} / occurrences_{c,f}`` (NaN where the
    feature never occurs in class ``c``) and the flip counts (int64)."""
    fn = "spurious_scores"
    c = _checks.check_int(fn, "num_classes", num_classes, min_value=1)
    if flipped.shape != occurs.shape or flipped.dim() != 2:
        raise ValueError(f"{fn}: flipped and occurs must both be (N, F)")
    _checks.check_labels(fn, "labels", labels, occurs.shape[0], occurs.device)
    one_hot = torch.nn.functional.one_hot(labels.long(), c).double().T  # (C, N)
    occ = one_hot @ occurs.double()
    flips = one_hot @ flipped.double()
    score = torch.where(occ > 0, flips / occ.clamp_min(1), torch.full_like(occ, math.nan))
    return score, flips.long()


def rank_feature_groups(
    scores: torch.Tensor,
    flips: torch.Tensor,
    features: Sequence[str],
    *,
    threshold: float = 0.7,
    normalize: Callable[[str], str] = normalize_phrase,
) -> list[tuple[list[int], float, int]]:
    """One class's ranked groups ``(feature indices, score, count)``, best first.

    Only features with at least one flip enter (the code lists flipped objects), ordered by
    flip count (stable), then merged (:func:`merge_phrases`); sorted by ``(score, count,
    group index)`` descending.
    """
    fn = "rank_feature_groups"
    if scores.dim() != 1 or scores.shape != flips.shape or len(features) != scores.shape[0]:
        raise ValueError(f"{fn}: scores, flips and features must have the same length F")
    cand = [i for i in range(len(features)) if int(flips[i]) > 0]
    cand.sort(key=lambda i: -int(flips[i]))
    groups = merge_phrases([features[i] for i in cand], threshold=threshold, normalize=normalize)
    ranked = []
    for gi, grp in enumerate(groups):
        members = [cand[k] for k in grp]
        score = sum(float(scores[i]) for i in members)
        count = sum(int(flips[i]) for i in members)
        ranked.append((score, count, gi, members))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]), reverse=True)
    return [(m, s, n) for s, n, _, m in ranked]


@dataclass(frozen=True)
class ASPIRESelection:
    """The kept edited images: ``images`` ``(S, ...)``, ``labels``, ``feature`` (index into
    ``features``), ``source`` (sample index), and per class its ranked groups."""

    images: torch.Tensor
    labels: torch.Tensor
    feature: torch.Tensor
    source: torch.Tensor
    ranking: dict[int, list[tuple[list[int], float, int]]]


class ASPIRESelector(nn.Module):
    """Scores, merges and caps the flip test's edited images per class (steps 3-5 above).

    Args:
        threshold: bag-of-words cosine for merging phrases (0.7).
        first_cap: images from the top group of a class (15).
        other_cap: images from each next group (10).
        class_cap: images per class (35).

    Example:
        >>> import torch
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
        >>> y = torch.tensor([0, 1, 0])
        >>> occurs = torch.ones(3, 1, dtype=torch.bool)
        >>> flips = flip_test(lambda z: z, x, y, features=["patch"], occurs=occurs,
        ...                   edit=lambda z, f: z.flip(1))
        >>> sel = ASPIRESelector()(flips, y, features=["patch"], generator=torch.Generator())
        >>> sorted(sel.source.tolist()), sel.ranking[0]
        ([0, 1, 2], [([0], 1.0, 2)])
    """

    def __init__(
        self,
        *,
        threshold: float = 0.7,
        first_cap: int = 15,
        other_cap: int = 10,
        class_cap: int = 35,
    ) -> None:
        super().__init__()
        fn = "ASPIRESelector"
        self.threshold = _checks.check_range(fn, "threshold", threshold, 0.0, 1.0)
        self.first_cap = _checks.check_int(fn, "first_cap", first_cap, min_value=0)
        self.other_cap = _checks.check_int(fn, "other_cap", other_cap, min_value=0)
        self.class_cap = _checks.check_int(fn, "class_cap", class_cap, min_value=0)

    def forward(
        self,
        result: FlipResult,
        labels: torch.Tensor,
        *,
        features: Sequence[str],
        num_classes: int | None = None,
        normalize: Callable[[str], str] = normalize_phrase,
        generator: torch.Generator | None = None,
    ) -> ASPIRESelection:
        """Select the edited images to keep.

        Args:
            result: the :func:`flip_test` outcome.
            labels: ``(N,)`` the labels given to the flip test.
            features: its ``F`` phrases.
            num_classes: ``C`` (default ``labels.max() + 1``).
            normalize: the phrase normaliser of :func:`merge_phrases`.
            generator: draws which edited images of a group are kept (CPU).
        """
        fn = "ASPIRESelector"
        if not isinstance(result, FlipResult):
            raise TypeError(f"{fn}: result must be a FlipResult; got {type(result).__name__}")
        _checks.check_generator(fn, generator, torch.device("cpu"))
        c = num_classes if num_classes is not None else int(labels.max()) + 1
        scores, flips = spurious_scores(result.flipped, result.occurs, labels, num_classes=c)
        pool_img = torch.cat(result.edited) if result.edited else torch.empty(0)
        pool_src = torch.cat(result.edited_index) if result.edited_index else torch.empty(0)
        pool_feat = torch.cat(
            [torch.full_like(ix, j) for j, ix in enumerate(result.edited_index)]
        ) if result.edited_index else torch.empty(0, dtype=torch.long)  # fmt: skip
        pool_lab = labels[pool_src.long()]
        keep: list[torch.Tensor] = []
        ranking: dict[int, list[tuple[list[int], float, int]]] = {}
        for cls in range(c):
            ranked = rank_feature_groups(
                scores[cls].nan_to_num(0.0), flips[cls], features,
                threshold=self.threshold, normalize=normalize,
            )  # fmt: skip
            ranking[cls] = ranked
            takes = image_cap(
                [n for _, _, n in ranked],
                first=self.first_cap, rest=self.other_cap, total=self.class_cap,
            )  # fmt: skip
            for (members, _, _), k in zip(ranked, takes, strict=True):
                in_grp = torch.isin(pool_feat, torch.tensor(members, device=pool_feat.device))
                rows = torch.nonzero(in_grp & (pool_lab == cls)).flatten()
                if k > 0:
                    pick = torch.randperm(rows.numel(), generator=generator)[:k]
                    keep.append(rows[pick.to(rows.device)])
        rows = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long)
        return ASPIRESelection(
            images=pool_img[rows] if pool_img.numel() else pool_img,
            labels=pool_lab[rows],
            feature=pool_feat[rows],
            source=pool_src[rows].long(),
            ranking=ranking,
        )

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold}, first_cap={self.first_cap}, "
            f"other_cap={self.other_cap}, class_cap={self.class_cap}"
        )
