"""Class-dependent compression: iterative magnitude pruning with a class-weighted loss.

Entezari, Saukh. *Class-dependent Compression of Deep Neural Networks* (published as
*Class-dependent Pruning of Deep Neural Networks*). SenSys-ML 2020, arXiv 1909.10364.

Transcribed from the released code, rahimentezari/Sensys-ml2020 at 1c0c7b3: ``Decon_edit.py``
(``prune_and_rewindRemaining_to_k``, the ``my_hook*`` gradient hooks, the main loop) and
``models/train_model.py`` (``binary_crossentropy_with_ranking``, the loss in ``train_model``).

The base method is lottery-ticket iterative magnitude pruning (IMP) with rewinding to θ0 and the
"magnitude increase" score ``|w_final| - |w_init|`` of Zhou et al.; pruning is per tensor (50% of
the surviving entries of every Linear/Conv weight *and bias* per round). The class-dependent part
is the training loss: ``BCEWithLogitsLoss(pos_weight=w)`` on one-hot targets plus a ranking term.
The released script sets ``w = [1, 1]`` and adds the ranking term (computed on detached outputs)
with weight 0, so it reduces to class-agnostic IMP; :func:`class_dependent_loss` with
``pos_weight=(1, 1)``, ``ranking_weight=0`` is exactly that switch. The paper's class-dependent
version needs ``pos_weight`` of the important class > 1 and/or a non-zero ranking weight on
non-detached scores (values are not given in the code; posneg's default weights class 1 by 3).

Deliberate differences from the code (each shown in tests/selection/test_compression.py):
  * already-pruned entries get score ``+inf`` (code: ``10e5``; equal for weights below 1e6);
  * ties in the score are broken by the lower flat index (a stable sort; the code's
    ``torch.topk(largest=False)`` leaves tie order to the backend);
  * pruned entries are boolean masks, not Python lists of indices looped over in hooks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = [
    "ClassDependentLoss",
    "PruneRound",
    "class_dependent_loss",
    "freeze_pruned",
    "iterative_magnitude_pruning",
    "magnitude_increase_score",
    "prunable_parameters",
    "prune_mask",
    "ranking_term",
    "rewind",
]

CITATION = """
@inproceedings{entezari2020classdependent,
  title     = {Class-dependent Pruning of Deep Neural Networks},
  author    = {Entezari, Rahim and Saukh, Olga},
  booktitle = {2020 IEEE Second Workshop on Machine Learning on Edge in Sensor Systems (SenSys-ML)},
  year      = {2020},
  note      = {arXiv:1909.10364}
}
"""

R = TypeVar("R")

#: The clamp of ``binary_crossentropy_with_ranking`` (``epsilon = 10e-8``).
_RANK_EPS = 1e-7


def magnitude_increase_score(
    final: torch.Tensor, init: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Magnitude-increase score ``|w_final| - |w_init|``, ``+inf`` on already-pruned entries.

    Low scores are pruned first: the entry whose magnitude shrank most during training goes.

    Args:
        final: trained weights (any shape).
        init: the rewound initial weights θ0 (same shape).
        mask: bool, True where the entry survives (same shape).

    Returns:
        Float tensor of ``final``'s shape and dtype.

    Raises:
        TypeError: non-floating weights, non-bool mask.
        ValueError: shapes or devices differ.

    Example:
        >>> import torch
        >>> s = magnitude_increase_score(torch.tensor([0.1, 2.0]), torch.tensor([1.0, 1.0]),
        ...                              torch.tensor([True, True]))
        >>> [round(v, 3) for v in s.tolist()]
        [-0.9, 1.0]
    """
    fn = "magnitude_increase_score"
    _checks.check_float(fn, "final", final)
    _checks.check_float(fn, "init", init)
    _check_mask(fn, mask, final)
    if init.shape != final.shape:
        raise ValueError(
            f"{fn}: init must have the shape of final {tuple(final.shape)}; got {tuple(init.shape)}"
        )
    _checks.check_same_device(fn, "init", init, "final", final)
    score = final.abs() - init.abs().to(final.dtype)
    return torch.where(mask, score, torch.full_like(score, float("inf")))


def prune_mask(score: torch.Tensor, mask: torch.Tensor, *, fraction: float = 0.5) -> torch.Tensor:
    """Prune ``floor(fraction * n_alive)`` surviving entries with the lowest score (one tensor).

    As ``prune_and_rewindRemaining_to_k``: ``int((numel - n_pruned) * prune_each_iteration)``
    entries go each round, so after t rounds about ``(1 - fraction)^t`` remain (up to flooring).
    Ties go to the lower flat index.

    Args:
        score: scores of any shape (``+inf`` on pruned entries, see
            :func:`magnitude_increase_score`).
        mask: bool survivors of the same shape.
        fraction: share of the survivors pruned, in [0, 1] (code: 0.5).

    Returns:
        The new bool mask (a subset of ``mask``).

    Raises:
        TypeError: non-floating score, non-bool mask.
        ValueError: shapes differ, ``fraction`` outside [0, 1].

    Example:
        >>> import torch
        >>> keep = torch.ones(4, dtype=torch.bool)
        >>> prune_mask(torch.tensor([3.0, -1.0, 0.5, 2.0]), keep).tolist()
        [True, False, False, True]
    """
    fn = "prune_mask"
    _checks.check_float(fn, "score", score)
    _check_mask(fn, mask, score)
    frac = _checks.check_range(fn, "fraction", fraction, 0.0, 1.0)
    alive = int(mask.sum())
    k = int(alive * frac)
    flat = torch.where(mask, score, torch.full_like(score, float("inf"))).reshape(-1)
    order = torch.sort(flat, stable=True).indices[:k]
    new = mask.clone().reshape(-1)
    new[order] = False
    return new.reshape(mask.shape)


def rewind(
    init_state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """θ0 with the pruned entries zeroed: survivors bit-exactly equal to ``init_state``.

    Args:
        init_state: a ``state_dict`` copy taken before the first round.
        masks: parameter name -> bool survivors (names absent from ``masks`` are kept whole).

    Returns:
        A new state dict.

    Raises:
        ValueError: a mask names a missing entry or has the wrong shape.
    """
    fn = "rewind"
    out = {k: v.clone() for k, v in init_state.items()}
    for name, mask in masks.items():
        if name not in out:
            raise ValueError(f"{fn}: masks names {name!r}, which init_state does not hold")
        _check_mask(fn, mask, out[name])
        out[name] = torch.where(mask, out[name], torch.zeros_like(out[name]))
    return out


def ranking_term(
    logits: torch.Tensor, onehot: torch.Tensor, *, detach: bool = False
) -> torch.Tensor:
    """The code's ranking penalty ``R = sum_{y=1} min(s - m, 0)^2 / (n_pos + 1)``.

    ``binary_crossentropy_with_ranking``: ``s = clamp(logits, 1e-7, 1 - 1e-7)`` on the raw
    outputs (no sigmoid: the code skips its logit/probability step), ``m`` = the largest ``s``
    over the one-hot entries with ``y = 0`` in the whole batch (a single scalar), ``n_pos`` =
    the number of entries with ``y = 1`` (B for one-hot labels). Zero when every positive score
    is at least the largest negative one. ``detach=True`` is the released code (no gradient).

    Args:
        logits: (B, C) outputs.
        onehot: (B, C) 0/1 targets.
        detach: stop the gradient through ``s`` (as released).

    Returns:
        Scalar.
    """
    fn = "ranking_term"
    _checks.check_float(fn, "logits", logits)
    _checks.check_float(fn, "onehot", onehot)
    if logits.dim() != 2 or onehot.shape != logits.shape:
        raise ValueError(
            f"{fn}: logits and onehot must both have shape (B, C); got {tuple(logits.shape)} "
            f"and {tuple(onehot.shape)}"
        )
    s = logits.clamp(_RANK_EPS, 1.0 - _RANK_EPS)
    if detach:
        s = s.detach()
    m = (s * (onehot < 1).to(s.dtype)).max()
    diff = ((s - m) * onehot).clamp(-100.0, 0.0) ** 2
    return diff.sum() / ((onehot > 0).sum() + 1)


def class_dependent_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    pos_weight: Sequence[float] | torch.Tensor = (1.0, 3.0),
    ranking_weight: float = 0.0,
    detach_ranking: bool = False,
) -> torch.Tensor:
    """Class-weighted BCE on one-hot targets plus a weighted ranking term.

    ``L = BCEWithLogits(logits, onehot(target), pos_weight=w) + ranking_weight * R`` with
    ``BCE = -(1/(B C)) sum_{i,c} [w_c y_ic log σ(x_ic) + (1 - y_ic) log(1 - σ(x_ic))]`` and ``R``
    from :func:`ranking_term`. ``pos_weight=(1, 1)``, ``ranking_weight=0`` is the released
    script (class-agnostic IMP); a larger ``w_c`` for the important class c is the paper's
    class-dependent loss.

    Args:
        logits: (B, C) outputs (C = 2 in the paper).
        target: (B,) int64 labels in [0, C).
        pos_weight: C positive-term weights, each > 0.
        ranking_weight: weight of the ranking term, >= 0 (code: 0).
        detach_ranking: compute R on detached outputs (code: True).

    Returns:
        Scalar (float32 for half inputs).

    Raises:
        TypeError: non-floating logits, non-integer target, bad flag types.
        ValueError: bad shapes, labels outside [0, C), pos_weight length or sign.

    Example:
        >>> import torch
        >>> z, y = torch.zeros(4, 2), torch.tensor([0, 1, 1, 0])
        >>> round(float(class_dependent_loss(z, y, pos_weight=(1.0, 1.0))), 4)
        0.6931
    """
    fn = "class_dependent_loss"
    _checks.check_float(fn, "logits", logits)
    if logits.dim() != 2:
        raise ValueError(f"{fn}: logits must have shape (B, C); got {tuple(logits.shape)}")
    target = _checks.check_labels(fn, "target", target, logits.shape[0], logits.device)
    c = logits.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
        raise ValueError(f"{fn}: target must hold labels in [0, {c}); got {target.tolist()}")
    w = _pos_weight(fn, pos_weight, c)
    rw = _checks.check_nonnegative(fn, "ranking_weight", ranking_weight)
    _checks.check_bool(fn, "detach_ranking", detach_ranking)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    onehot = F.one_hot(target, c).to(z.dtype)
    bce = F.binary_cross_entropy_with_logits(z, onehot, pos_weight=w.to(z.device, z.dtype))
    if rw == 0.0:
        return bce
    return bce + rw * ranking_term(z, onehot, detach=detach_ranking)


class ClassDependentLoss(nn.Module):
    """Module form of :func:`class_dependent_loss` (Entezari and Saukh, arXiv 1909.10364).

    Example:
        >>> import torch
        >>> loss = ClassDependentLoss(pos_weight=(1.0, 3.0))
        >>> loss(torch.zeros(4, 2), torch.tensor([0, 1, 1, 0])).dim()
        0
    """

    def __init__(
        self,
        *,
        pos_weight: Sequence[float] = (1.0, 3.0),
        ranking_weight: float = 0.0,
        detach_ranking: bool = False,
    ) -> None:
        super().__init__()
        fn = "ClassDependentLoss"
        self.pos_weight = tuple(float(v) for v in _pos_weight(fn, pos_weight, None).tolist())
        self.ranking_weight = _checks.check_nonnegative(fn, "ranking_weight", ranking_weight)
        self.detach_ranking = _checks.check_bool(fn, "detach_ranking", detach_ranking)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return class_dependent_loss(
            logits,
            target,
            pos_weight=self.pos_weight,
            ranking_weight=self.ranking_weight,
            detach_ranking=self.detach_ranking,
        )

    def extra_repr(self) -> str:
        return (
            f"pos_weight={self.pos_weight}, ranking_weight={self.ranking_weight}, "
            f"detach_ranking={self.detach_ranking}"
        )


# ------------------------------------------------------------------------------------ the driver


def prunable_parameters(model: nn.Module, *, include_bias: bool = True) -> dict[str, torch.Tensor]:
    """The tensors the code prunes: weights (and biases) of every Linear and Conv layer, by name."""
    fn = "prunable_parameters"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: model must be an nn.Module; got {type(model).__name__}")
    _checks.check_bool(fn, "include_bias", include_bias)
    out: dict[str, torch.Tensor] = {}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            prefix = f"{mod_name}." if mod_name else ""
            out[prefix + "weight"] = mod.weight
            if include_bias and mod.bias is not None:
                out[prefix + "bias"] = mod.bias
    return out


def freeze_pruned(
    model: nn.Module, masks: dict[str, torch.Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Register gradient hooks that zero the gradient of pruned entries (the code's ``my_hook*``).

    With zero gradients, SGD (with momentum, from a fresh optimizer) and Adam leave pruned
    entries exactly 0. Remove the returned handles after training.
    """
    params = dict(model.named_parameters())
    handles = []
    for name, mask in masks.items():
        keep = mask.to(params[name].dtype)
        handles.append(params[name].register_hook(lambda grad, keep=keep: grad * keep))
    return handles


@dataclass(frozen=True)
class PruneRound:
    """One IMP round: the share of prunable entries that trained, and what ``train`` returned."""

    round: int
    remaining: float
    result: Any


def iterative_magnitude_pruning(
    model: nn.Module,
    train: Callable[[nn.Module, int], R],
    *,
    rounds: int = 8,
    fraction: float = 0.5,
    include_bias: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[PruneRound]:
    """Lottery-ticket IMP with rewinding, as the released ``Decon_edit.py`` main loop.

    Round t = 0..rounds: load θ0 with the current mask (pruned entries 0), train with the pruned
    entries frozen (``train(model, t)`` trains in place, e.g. with
    :class:`ClassDependentLoss`, restores its selected epoch, and returns metrics), then, except
    after the last round, score every prunable tensor with :func:`magnitude_increase_score`
    against θ0 and drop ``fraction`` of its survivors with :func:`prune_mask`. The class-dependent
    part lives in the loss that ``train`` uses.

    Args:
        model: the network; its current weights are θ0 (pretrained or random).
        train: ``train(model, round) -> result``.
        rounds: number of pruning steps (rounds + 1 trainings); 8 leaves 0.4% at fraction 0.5.
        fraction: share of the survivors pruned per tensor per round (code 0.5).
        include_bias: prune biases too (code: yes).
        progress: optional ``progress(done, total)`` callback.

    Returns:
        One :class:`PruneRound` per training; ``model`` ends as trained in the last round.
    """
    fn = "iterative_magnitude_pruning"
    n_rounds = _checks.check_int(fn, "rounds", rounds, min_value=0)
    frac = _checks.check_range(fn, "fraction", fraction, 0.0, 1.0)
    if not callable(train):
        raise TypeError(f"{fn}: train must be callable; got {type(train).__name__}")
    params = prunable_parameters(model, include_bias=include_bias)
    if not params:
        raise ValueError(f"{fn}: model has no Linear or Conv layer to prune")
    init_state = copy.deepcopy(model.state_dict())
    masks = {k: torch.ones_like(p, dtype=torch.bool) for k, p in params.items()}
    total = sum(p.numel() for p in params.values())
    out: list[PruneRound] = []
    for t in range(n_rounds + 1):
        model.load_state_dict(rewind(init_state, masks))
        handles = freeze_pruned(model, masks)
        try:
            result = train(model, t)
        finally:
            for h in handles:
                h.remove()
        remaining = sum(int(m.sum()) for m in masks.values()) / total
        out.append(PruneRound(t, remaining, result))
        if progress is not None:
            progress(t + 1, n_rounds + 1)
        if t == n_rounds:
            break
        trained = dict(model.named_parameters())
        for name in masks:
            with torch.no_grad():
                score = magnitude_increase_score(
                    trained[name].detach(), init_state[name], masks[name]
                )
            masks[name] = prune_mask(score, masks[name], fraction=frac)
    return out


# --------------------------------------------------------------------------------- validation


def _check_mask(fn: str, mask: Any, ref: torch.Tensor) -> None:
    _checks.check_tensor(fn, "mask", mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"{fn}: mask must be a bool tensor; got {mask.dtype}")
    if mask.shape != ref.shape:
        raise ValueError(f"{fn}: mask must have shape {tuple(ref.shape)}; got {tuple(mask.shape)}")


def _pos_weight(fn: str, value: Any, c: int | None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        w = value.detach().to(torch.float64).reshape(-1).cpu()
    elif isinstance(value, (list, tuple)):
        w = torch.tensor(
            [_checks.check_real(fn, "pos_weight", v) for v in value], dtype=torch.float64
        )
    else:
        raise TypeError(
            f"{fn}: pos_weight must be a sequence of floats; got {type(value).__name__}"
        )
    if w.numel() < 1 or (c is not None and w.numel() != c):
        want = f"{c} entries (one per class)" if c is not None else "at least one entry"
        raise ValueError(f"{fn}: pos_weight must have {want}; got {w.numel()}")
    if not bool((w > 0).all()) or not bool(torch.isfinite(w).all()):
        raise ValueError(f"{fn}: pos_weight entries must be finite and > 0; got {w.tolist()}")
    return w
