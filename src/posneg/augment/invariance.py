"""Invariance-constrained augmentation: Metropolis-Hastings sampling of worst-case transformations
and a primal-dual update of the constraint's multiplier.

Hounie, Chamon, Ribeiro. Automatic Data Augmentation via Invariance-Constrained Learning. ICML
2023, arXiv 2209.15031.

The problem ``min_theta E l(f(x), y)  s.t.  E_x max_g l(f(g x), y) <= eps`` is relaxed to an
expectation under a distribution over transformations whose density is proportional to the loss,
``p(g | x) ∝ l(f(g x), y)``, sampled by independence Metropolis-Hastings, and solved primal-dual::

    proposals   g_s = (op_s, level_s),  op ~ U{1..K-1} (identity excluded), level ~ U{1..max_level}
    MH          accept g_s with probability min(1, l_s / l_current); keep the last state
    primal      L = CE(f(x), y) + gamma * CE(f(x_MH), y)
    dual        gamma <- max(0, gamma + eta (CE(f(x_MH), y) - eps))

Checked against the official code, github.com/ihounie/daug, ``TrivialAugment/train_pd_batch.py``
(``run_epoch_dual``, commit a75c186): proposals are drawn i.i.d. (one batched no-grad forward of
all ``steps x B`` proposals, the model in train mode), the acceptance is
``min(nan_to_num(l_s / l_cur), 1) * (ratio > 0)`` (a zero current loss gives ``inf`` -> a huge
finite number -> accept; ``0 / 0`` gives 0 -> reject), chains restart every batch, the dual step
uses the detached batch-mean augmented CE after the primal step, ``gamma_0 = 0``, ``steps = 2``,
``eta = 1e-4``. ``steps = 1`` is the paper's "uniform" ablation (no MH move, still
gamma-weighted). The ``PD.sample`` variant (replace clean samples with probability
``gamma / (1 + gamma)``) is not implemented.

Transformations run on posneg's kernels through :func:`posneg.augment.madaug.apply_ops` (images:
MADAug's 16 RandAugment-style ops; sequences: its 1-D ops). A level ``l`` is the strength
``r = l / max_level`` in (0, 1] (TrivialAugment's ``float_parameter``); :func:`level_magnitudes`
maps it into that op space: signed ops get ``m = (1 + r) / 2`` and a random sign (so strength 0
would be the identity), solarize and posterize get ``m = 1 - r`` (they are strongest at m = 0), the
rest ``m = r``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng
from posneg.augment.madaug import IMAGE_RANGES, SEQUENCE_RANGES, apply_ops

__all__ = [
    "CITATION",
    "InvarianceSampler",
    "dual_update",
    "level_magnitudes",
    "metropolis_hastings",
    "primal_dual_loss",
    "sample_proposals",
]

CITATION = """
@inproceedings{hounie2023automatic,
  title     = {Automatic Data Augmentation via Invariance-Constrained Learning},
  author    = {Hounie, Ignacio and Chamon, Luiz F. O. and Ribeiro, Alejandro},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  year      = {2023},
  eprint    = {2209.15031},
  archivePrefix = {arXiv}
}
"""

_INVERSE = frozenset({"solarize", "posterize"})


def sample_proposals(
    batch: int,
    steps: int,
    *,
    num_ops: int,
    max_level: int = 29,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` i.i.d. proposals per sample: ops uniform on 1..num_ops-1 (op 0, the identity,
    excluded) and levels uniform on 1..max_level (0 excluded). Returns (ops, levels), each
    (steps, batch) int64. Draw order: ops, then levels."""
    fn = "sample_proposals"
    b = _checks.check_int(fn, "batch", batch, min_value=0)
    s = _checks.check_int(fn, "steps", steps, min_value=1)
    k = _checks.check_int(fn, "num_ops", num_ops, min_value=2)
    lmax = _checks.check_int(fn, "max_level", max_level, min_value=1)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    ops = 1 + _rng.randint(k - 1, (s, b), device=dev, generator=generator)
    levels = 1 + _rng.randint(lmax, (s, b), device=dev, generator=generator)
    return ops, levels


def level_magnitudes(
    ops: torch.Tensor, levels: torch.Tensor, *, max_level: int, kind: str
) -> torch.Tensor:
    """Map levels to :func:`~posneg.augment.madaug.apply_ops` magnitudes in [0, 1] (module doc)."""
    fn = "level_magnitudes"
    lmax = _checks.check_int(fn, "max_level", max_level, min_value=1)
    table = (
        IMAGE_RANGES
        if _checks.check_choice(fn, "kind", kind, ("image", "sequence")) == "image"
        else SEQUENCE_RANGES
    )
    names = list(table)
    signed = torch.tensor([table[n][2] for n in names], device=ops.device)[ops]
    inverse = torch.tensor([n in _INVERSE for n in names], device=ops.device)[ops]
    r = levels.to(torch.float32) / lmax
    return torch.where(signed, 0.5 + 0.5 * r, torch.where(inverse, 1.0 - r, r))


def metropolis_hastings(
    losses: torch.Tensor, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Independence MH over ``steps`` proposals per sample with target density ∝ loss.

    Args:
        losses: (steps, B) proposal losses (i.i.d. proposals, so the proposal density cancels).
        generator: one Bernoulli draw per (step >= 1, sample).

    Returns:
        ``state`` (B,) index of the chain's last state, ``accepted`` (steps - 1, B) bool,
        ``chain_loss`` (B,) the loss of the last state.
    """
    fn = "metropolis_hastings"
    _checks.check_float(fn, "losses", losses)
    if losses.dim() != 2 or losses.shape[0] < 1:
        raise ValueError(f"{fn}: losses must have shape (steps >= 1, B); got {tuple(losses.shape)}")
    _checks.check_generator(fn, generator, losses.device)
    state = torch.zeros(losses.shape[1], dtype=torch.int64, device=losses.device)
    current = losses[0].clone()
    accepted = torch.zeros(
        losses.shape[0] - 1, losses.shape[1], dtype=torch.bool, device=losses.device
    )
    ones = torch.ones_like(current)
    for s in range(1, losses.shape[0]):
        ratio = torch.minimum(torch.nan_to_num(losses[s] / current), ones)
        ratio = ratio * (ratio > 0)
        acc = torch.bernoulli(ratio, generator=generator).bool()
        accepted[s - 1] = acc
        state = torch.where(acc, torch.full_like(state, s), state)
        current = torch.where(acc, losses[s], current)
    return state, accepted, current


def dual_update(gamma: float, constraint_value: float, *, lr: float, margin: float) -> float:
    """``max(0, gamma + lr (constraint_value - margin))``: projected dual ascent."""
    fn = "dual_update"
    g = _checks.check_nonnegative(fn, "gamma", gamma)
    c = _checks.check_real(fn, "constraint_value", constraint_value)
    eta = _checks.check_nonnegative(fn, "lr", lr)
    eps = _checks.check_real(fn, "margin", margin)
    return max(0.0, g + eta * (c - eps))


def primal_dual_loss(
    clean_loss: torch.Tensor, aug_loss: torch.Tensor, gamma: float
) -> torch.Tensor:
    """The Lagrangian's primal objective ``clean_loss + gamma * aug_loss``."""
    _checks.check_nonnegative("primal_dual_loss", "gamma", gamma)
    return clean_loss + gamma * aug_loss


class InvarianceSampler:
    """Primal-dual invariance-constrained augmentation: MH sampler plus the dual variable.

    Hounie, Chamon, Ribeiro. Automatic Data Augmentation via Invariance-Constrained Learning. ICML
    2023, arXiv 2209.15031.

    State (trailing underscore): ``gamma_`` (the multiplier of the single constraint, starts at
    ``gamma0``), ``steps_`` (dual updates made), ``op_counts_`` (how often each op was the chain's
    final state). Use: ``x_aug = s.sample(model, x, y, generator=g)`` (or
    ``s(model, x, y, generator=g)``); train on
    ``s.loss(model(x), model(x_aug), y)``; then ``s.update(aug_loss)``.

    Args:
        kind: ``"image"`` or ``"sequence"`` (the op space of :mod:`posneg.augment.madaug`).
        mh_steps: proposals per chain (2: one MH move; 1: the "uniform" ablation).
        lr: the dual step size eta (1e-4 in the official configs).
        margin: the constraint level eps (0.8 for CIFAR-10 WRN-40-2).
        max_level: levels are 1..max_level (29).
        gamma0: initial multiplier (0).

    Example:
        >>> s = InvarianceSampler(kind="sequence", lr=0.1, margin=0.5)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3))
        >>> x, y = torch.randn(8, 1, 40), torch.randint(0, 3, (8,))
        >>> x_aug = s.sample(model, x, y, generator=torch.Generator().manual_seed(0))
        >>> x_aug.shape
        torch.Size([8, 1, 40])
    """

    def __init__(
        self,
        *,
        kind: str = "image",
        mh_steps: int = 2,
        lr: float = 1e-4,
        margin: float = 0.8,
        max_level: int = 29,
        gamma0: float = 0.0,
    ) -> None:
        fn = "InvarianceSampler"
        self.kind = _checks.check_choice(fn, "kind", kind, ("image", "sequence"))
        self.mh_steps = _checks.check_int(fn, "mh_steps", mh_steps, min_value=1)
        self.lr = _checks.check_nonnegative(fn, "lr", lr)
        self.margin = _checks.check_real(fn, "margin", margin)
        self.max_level = _checks.check_int(fn, "max_level", max_level, min_value=1)
        self.gamma0 = _checks.check_nonnegative(fn, "gamma0", gamma0)
        self.num_ops = len(IMAGE_RANGES if self.kind == "image" else SEQUENCE_RANGES)
        self.gamma_ = self.gamma0
        self.steps_ = 0
        self.op_counts_ = torch.zeros(self.num_ops, dtype=torch.int64)

    def sample(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The chains' final states: one augmented copy of each sample (no gradient).

        The proposal losses come from one no-grad forward of all ``mh_steps x B`` proposals in
        the model's current mode (the official code: train mode). Draw order: proposals, signs,
        MH acceptances.
        """
        fn = "InvarianceSampler.sample"
        if (x.dim() == 4) != (self.kind == "image"):
            raise ValueError(f"{fn}: x of shape {tuple(x.shape)} does not fit kind={self.kind!r}")
        _checks.check_generator(fn, generator, x.device)
        b, s = x.shape[0], self.mh_steps
        ops, levels = sample_proposals(
            b,
            s,
            num_ops=self.num_ops,
            max_level=self.max_level,
            device=x.device,
            generator=generator,
        )
        mags = level_magnitudes(ops, levels, max_level=self.max_level, kind=self.kind)
        signs = (_rng.randint(2, (s, b), device=x.device, generator=generator) * 2 - 1).float()
        reps = x.repeat(s, *([1] * (x.dim() - 1)))
        props = apply_ops(reps, ops.reshape(-1), mags.reshape(-1), signs.reshape(-1))
        with torch.no_grad():
            losses = F.cross_entropy(model(props), y.repeat(s), reduction="none").view(s, b)
        state, _, _ = metropolis_hastings(losses, generator=generator)
        final = state * b + torch.arange(b, device=x.device)
        chosen = ops.reshape(-1)[final]
        self.op_counts_ += torch.bincount(chosen.cpu(), minlength=self.num_ops)
        return props[final]

    def forward(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Same as :meth:`sample` (``sampler(model, x, y, generator=g)``)."""
        return self.sample(model, x, y, generator=generator)

    __call__ = forward

    def loss(
        self, clean_logits: torch.Tensor, aug_logits: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(primal loss ``CE(clean) + gamma CE(aug)``, the augmented CE) for the batch."""
        aug = F.cross_entropy(aug_logits, y)
        return primal_dual_loss(F.cross_entropy(clean_logits, y), aug, self.gamma_), aug

    def update(self, aug_loss: torch.Tensor | float) -> float:
        """One dual ascent step on the batch's augmented CE (detached); returns the new gamma."""
        value = float(aug_loss.detach()) if isinstance(aug_loss, torch.Tensor) else float(aug_loss)
        self.gamma_ = dual_update(self.gamma_, value, lr=self.lr, margin=self.margin)
        self.steps_ += 1
        return self.gamma_

    def state_dict(self) -> dict[str, Any]:
        """The state: ``gamma_``, ``steps_``, ``op_counts_``."""
        return {"gamma_": self.gamma_, "steps_": self.steps_, "op_counts_": self.op_counts_.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (validated)."""
        fn = "InvarianceSampler.load_state_dict"
        missing = {"gamma_", "steps_", "op_counts_"} - set(state)
        if missing:
            raise ValueError(f"{fn}: state is missing {sorted(missing)}")
        counts = state["op_counts_"]
        if not isinstance(counts, torch.Tensor) or counts.shape != (self.num_ops,):
            raise ValueError(f"{fn}: op_counts_ must be a ({self.num_ops},) tensor")
        self.gamma_ = _checks.check_nonnegative(fn, "gamma_", state["gamma_"])
        self.steps_ = _checks.check_int(fn, "steps_", state["steps_"], min_value=0)
        self.op_counts_ = counts.clone().to(torch.int64)

    def __repr__(self) -> str:
        return (
            f"InvarianceSampler(kind={self.kind!r}, mh_steps={self.mh_steps}, lr={self.lr}, "
            f"margin={self.margin}, max_level={self.max_level}, gamma0={self.gamma0})"
        )
