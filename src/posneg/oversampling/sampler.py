"""A PyTorch batch sampler that rebalances classes on the fly.

imbalanced-learn offers ``BalancedBatchGenerator`` for Keras/TensorFlow; its PyTorch sampler has
been asked for since 2018 (imbalanced-learn issue #424). :class:`BalancedBatchSampler` yields
index batches whose class composition follows a target distribution (uniform over classes by
default), for any map-style dataset, as ``DataLoader(dataset, batch_sampler=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from posneg import _rng
from posneg.oversampling import _io

__all__ = ["BalancedBatchSampler"]

CITATION = """
@misc{lemaitre2017imbalanced,
  title  = {Imbalanced-learn: A Python Toolbox to Tackle the Curse of Imbalanced Datasets in
            Machine Learning},
  author = {Lema{\\^i}tre, Guillaume and Nogueira, Fernando and Aridas, Christos K.},
  note   = {Journal of Machine Learning Research 18(17):1-5, 2017; BalancedBatchGenerator},
  year   = {2017}
}
"""


class BalancedBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices whose classes follow a target distribution.

    Each batch of ``batch_size`` indices holds, for every class ``c`` with target probability
    ``p_c``, either ``floor(batch_size * p_c)`` or ``ceil(batch_size * p_c)`` samples of class
    ``c``: the counts are ``floor(C_c + u) - floor(C_{c-1} + u)`` with ``C_c`` the cumulative sums
    of ``batch_size * p`` and one ``u ~ U[0, 1)`` per batch (systematic sampling), so they always
    sum to ``batch_size`` and their expectation is exactly ``batch_size * p_c``; the empirical
    class frequencies over many batches converge to ``p``. With ``"balanced"`` and a batch size
    divisible by the number of classes every batch is exactly balanced.

    Within a class, indices are taken from a random permutation of the class's samples, cycled
    (a fresh permutation each time the class is exhausted), so minority samples are repeated
    evenly; with ``replacement=True`` they are drawn uniformly with replacement instead. Each
    batch is shuffled. Every epoch (each ``iter``) draws anew from ``generator``.

    Randomness: with a ``generator`` the global RNG is never touched and the sequence of epochs
    is reproducible; with ``None`` each epoch takes one seed from torch's global RNG (as
    ``torch.utils.data.RandomSampler`` does), so ``torch.manual_seed`` and DataLoader seeding
    apply.

    Args:
        labels: one class label per dataset item ``(N,)``: a sequence, numpy array or integer
            tensor (any device; kept on the CPU).
        batch_size: indices per batch, ``>= 1``.
        target: ``"balanced"`` (uniform over the classes present) or a dict ``{class: weight}``
            (non-negative, normalised; classes left out get 0; every key must be a class of
            ``labels``).
        num_batches: batches per epoch; default ``ceil(N / batch_size)`` (about one pass's worth).
        replacement: draw within a class with replacement instead of cycling permutations.
        generator: a CPU ``torch.Generator``, or ``None``.

    Raises:
        ValueError: empty labels, labels not 1-D, batch_size or num_batches < 1, an unknown
            target string, target classes absent from labels, negative weights or all zero.
        TypeError: float or bool label tensors, non-int batch_size/num_batches, a generator of
            another type.

    Example:
        >>> import torch
        >>> labels = torch.tensor([0] * 90 + [1] * 10)
        >>> sampler = BalancedBatchSampler(labels, 10, generator=torch.Generator().manual_seed(0))
        >>> batch = next(iter(sampler))
        >>> len(batch), sorted(labels[batch].tolist()).count(1)
        (10, 5)
    """

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        *,
        target: str | Mapping[Any, float] = "balanced",
        num_batches: int | None = None,
        replacement: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        fn = "BalancedBatchSampler"
        if isinstance(labels, torch.Tensor):
            if labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise TypeError(f"{fn}: labels must be an integer tensor; got {labels.dtype}")
            arr = labels.detach().cpu().numpy()
        else:
            arr = np.asarray(labels)
        if arr.ndim != 1:
            raise ValueError(f"{fn}: labels must have shape (N,); got {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{fn}: labels must not be empty")
        _io.check_int_param(fn, "batch_size", batch_size, 1)
        if num_batches is not None:
            _io.check_int_param(fn, "num_batches", num_batches, 1)
        if not isinstance(replacement, bool):
            raise TypeError(f"{fn}: replacement must be a bool; got {type(replacement).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{fn}: generator must be a torch.Generator or None; got {type(generator).__name__}"
            )
        classes, codes = np.unique(arr, return_inverse=True)
        weights = self._weights(fn, target, list(classes))
        self.labels = labels
        self.batch_size = int(batch_size)
        self.target = target
        self.num_batches = (
            int(num_batches) if num_batches is not None else math.ceil(arr.shape[0] / batch_size)
        )
        self.replacement = replacement
        self.generator = generator
        self.classes_ = classes
        #: target probability per class (aligned with ``classes_``)
        self.probabilities_ = weights / weights.sum()
        codes_t = torch.from_numpy(codes.reshape(-1).astype(np.int64))
        order = torch.argsort(codes_t, stable=True)
        counts = torch.bincount(codes_t, minlength=len(classes))
        self._members = list(torch.split(order, counts.tolist()))

    @staticmethod
    def _weights(fn: str, target: Any, classes: list[Any]) -> np.ndarray:
        if isinstance(target, str):
            if target != "balanced":
                raise ValueError(
                    f"{fn}: target must be 'balanced' or a dict {{class: weight}}; got {target!r}"
                )
            return np.ones(len(classes), dtype=np.float64)
        if not isinstance(target, Mapping):
            raise TypeError(
                f"{fn}: target must be 'balanced' or a dict {{class: weight}}; "
                f"got {type(target).__name__}"
            )
        missing = [c for c in target if c not in classes]
        if missing:
            raise ValueError(
                f"{fn}: target names class(es) {missing} that are not in labels "
                f"(classes present: {classes})"
            )
        weights = np.zeros(len(classes), dtype=np.float64)
        for i, c in enumerate(classes):
            value = target.get(c, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise TypeError(f"{fn}: target[{c!r}] must be a number; got {value!r}")
            if not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(f"{fn}: target[{c!r}] must be finite and >= 0; got {value!r}")
            weights[i] = float(value)
        if weights.sum() <= 0:
            raise ValueError(f"{fn}: target weights must not all be 0; got {dict(target)}")
        return weights

    def __len__(self) -> int:
        return self.num_batches

    def _epoch(self, gen: torch.Generator) -> torch.Tensor:
        """All batches of one epoch: int64 (num_batches, batch_size)."""
        nb, bs = self.num_batches, self.batch_size
        probs = torch.from_numpy(self.probabilities_)
        cum = torch.cumsum(bs * probs, 0)
        cum[-1] = float(bs)  # exact total despite rounding
        u = torch.rand(nb, 1, dtype=torch.float64, generator=gen)
        edges = torch.floor(torch.cat([torch.zeros(1, dtype=torch.float64), cum]) + u)
        counts = (edges[:, 1:] - edges[:, :-1]).to(torch.int64)  # (nb, n_classes)
        cls_seq = torch.repeat_interleave(
            torch.arange(len(self._members)).repeat(nb), counts.reshape(-1)
        ).view(nb, bs)
        out = torch.empty((nb, bs), dtype=torch.int64)
        flat_cls = cls_seq.reshape(-1)
        flat_out = out.view(-1)
        for c, members in enumerate(self._members):
            slots = torch.nonzero(flat_cls == c).squeeze(1)
            need = slots.numel()
            if need == 0:
                continue
            size = members.numel()
            if self.replacement:
                pick = torch.randint(size, (need,), generator=gen)
            else:
                reps = -(-need // size)
                keys = torch.rand((reps, size), generator=gen)
                pick = torch.argsort(keys, dim=1).reshape(-1)[:need]
            flat_out[slots] = members[pick]
        # shuffle within each batch
        perm = torch.argsort(torch.rand((nb, bs), generator=gen), dim=1)
        return torch.gather(out, 1, perm)

    def __iter__(self) -> Iterator[list[int]]:
        gen = _rng.epoch_generator(self.generator)
        yield from self._epoch(gen).tolist()

    def __repr__(self) -> str:
        return (
            f"BalancedBatchSampler(batch_size={self.batch_size}, target={self.target!r}, "
            f"num_batches={self.num_batches}, replacement={self.replacement}, "
            f"classes={len(self.classes_)})"
        )

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and the generator's state (to resume the epoch sequence)."""
        return {
            "batch_size": self.batch_size,
            "target": self.target,
            "num_batches": self.num_batches,
            "replacement": self.replacement,
            "generator_state": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (labels are the ones given at construction)."""
        self.batch_size = int(state["batch_size"])
        self.num_batches = int(state["num_batches"])
        self.replacement = bool(state["replacement"])
        if state["target"] != self.target:
            self.target = state["target"]
            weights = self._weights("BalancedBatchSampler", self.target, list(self.classes_))
            self.probabilities_ = weights / weights.sum()
        if state.get("generator_state") is not None:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator_state"])
