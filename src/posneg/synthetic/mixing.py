"""Mixing real and generated samples in every batch: the GDA sampler (a fixed synthetic share).

Zheng, Wu, Li, "Toward Understanding Generative Data Augmentation", NeurIPS 2023
(arXiv 2305.17476). Their CIFAR-10 training (official repository ``ML-GSAI/Understanding-GDA``,
``data/semisup.py``, ``SemiSupervisedSampler``, commit 00719a0) appends the generated images to
the real ones and builds every batch of ``B`` indices from ``B - int(B * f)`` real indices (a
shuffled pass over the real data) and ``int(B * f)`` generated indices drawn uniformly *with
replacement*, ``f = 0.7`` by default (``--unsup-fraction``) whatever the number of generated
samples; an epoch is ``ceil(m_real / (B - int(B * f)))`` batches (one pass over the real data).

:func:`gda_mix_batches` is that rule as a pure function (one epoch of index batches);
:class:`GDAMixSampler` is the ``DataLoader(batch_sampler=...)`` wrapper. The share may follow a
schedule: a callable ``batch index -> f`` (the paper and its code use a constant; the callable is
posneg's extension, for warm-ups that raise the synthetic share over an epoch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from posneg import _checks, _rng

__all__ = ["CITATION", "GDAMixSampler", "gda_mix_batches"]

CITATION = """
@inproceedings{zheng2023toward,
  title     = {Toward Understanding Generative Data Augmentation},
  author    = {Zheng, Chenyu and Wu, Guoqiang and Li, Chongxuan},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023},
  note      = {arXiv:2305.17476}
}
"""

#: The official default share of generated samples per batch (``--unsup-fraction 0.7``).
DEFAULT_SYN_FRACTION = 0.7

Schedule = float | Callable[[int], float]


def _indices(fn: str, name: str, values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        if values.dtype.is_floating_point or values.dtype == torch.bool:
            raise TypeError(f"{fn}: {name} must hold integers; got {values.dtype}")
        t = values.detach().to("cpu", torch.int64)
    else:
        try:
            t = torch.as_tensor(list(values), dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{fn}: {name} must be a sequence of ints; got {values!r:.60}") from exc
    if t.dim() != 1:
        raise ValueError(f"{fn}: {name} must be 1-D; got shape {tuple(t.shape)}")
    return t


def _share(fn: str, syn_fraction: Schedule, i: int) -> float:
    f = syn_fraction(i) if callable(syn_fraction) else syn_fraction
    return _checks.check_range(fn, f"syn_fraction (batch {i})", f, 0.0, 1.0, high_open=True)


def _synthetic_per_batch(batch_size: int, f: float) -> int:
    return int(batch_size * f)  # the official int(): floor for f >= 0


def _num_batches(n_real: int, batch_size: int, syn_fraction: Schedule, fn: str) -> int:
    """Batches of one pass over ``n_real`` real indices (official: ``ceil(m / real per batch)``)."""
    if not callable(syn_fraction):
        real = batch_size - _synthetic_per_batch(batch_size, _share(fn, syn_fraction, 0))
        return math.ceil(n_real / real)
    seen, i = 0, 0
    while seen < n_real:
        seen += batch_size - _synthetic_per_batch(batch_size, _share(fn, syn_fraction, i))
        i += 1
    return i


def gda_mix_batches(
    real_indices: Sequence[int] | torch.Tensor,
    synthetic_indices: Sequence[int] | torch.Tensor,
    *,
    batch_size: int,
    syn_fraction: Schedule = DEFAULT_SYN_FRACTION,
    num_batches: int | None = None,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """One epoch of index batches mixing real and generated samples (functional form).

    See :class:`GDAMixSampler`. Batch ``i`` holds ``s_i = int(batch_size * f_i)`` generated
    indices, drawn uniformly with replacement from ``synthetic_indices``, and the next
    ``batch_size - s_i`` real indices of a random permutation of ``real_indices``; when the
    permutation runs out inside a batch, that batch takes the rest and is filled up with
    generated indices to ``batch_size`` (as the official sampler does), and the next batch starts
    a fresh permutation. Each batch is shuffled.

    Args:
        real_indices: dataset indices of the real samples ``(N_r,)``, ``N_r >= 1``.
        synthetic_indices: dataset indices of the generated samples ``(N_s,)`` (may be empty
            only when no batch asks for a generated sample).
        batch_size: indices per batch, ``>= 1``.
        syn_fraction: the share ``f`` of generated samples per batch, in ``[0, 1)``, or a
            schedule ``f(i)`` of the batch index ``i`` (0-based within the epoch).
        num_batches: batches in the epoch; default: one pass over the real indices
            (``ceil(N_r / (batch_size - int(batch_size * f)))`` for a constant ``f``).
        generator: a CPU ``torch.Generator``; None uses torch's global RNG.

    Returns:
        ``num_batches`` int64 tensors of ``batch_size`` dataset indices.

    Raises:
        ValueError: empty ``real_indices``, a share outside ``[0, 1)``, ``batch_size`` or
            ``num_batches`` < 1, generated samples asked for but ``synthetic_indices`` empty.
        TypeError: non-integer indices, a non-int ``batch_size``, a bad ``generator``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> batches = gda_mix_batches(range(10), range(10, 100), batch_size=10, generator=g)
        >>> len(batches), sum(int(i) >= 10 for i in batches[0])
        (4, 7)
    """
    fn = "gda_mix_batches"
    real = _indices(fn, "real_indices", real_indices)
    syn = _indices(fn, "synthetic_indices", synthetic_indices)
    bs = _checks.check_int(fn, "batch_size", batch_size, min_value=1)
    _checks.check_generator(fn, generator, torch.device("cpu"))
    if real.numel() == 0:
        raise ValueError(f"{fn}: real_indices must not be empty")
    if num_batches is None:
        nb = _num_batches(real.numel(), bs, syn_fraction, fn)
    else:
        nb = _checks.check_int(fn, "num_batches", num_batches, min_value=1)
    perm, pos = real[torch.randperm(real.numel(), generator=generator)], 0
    batches = []
    for i in range(nb):
        if pos >= real.numel():
            perm, pos = real[torch.randperm(real.numel(), generator=generator)], 0
        n_real = bs - _synthetic_per_batch(bs, _share(fn, syn_fraction, i))
        take = perm[pos : pos + n_real]
        pos += n_real
        n_syn = bs - take.numel()
        if n_syn and syn.numel() == 0:
            raise ValueError(
                f"{fn}: batch {i} needs {n_syn} generated samples but synthetic_indices is empty"
            )
        drawn = syn[torch.randint(syn.numel(), (n_syn,), generator=generator)] if n_syn else syn[:0]
        batch = torch.cat([take, drawn])
        batches.append(batch[torch.randperm(bs, generator=generator)])
    return batches


class GDAMixSampler(Sampler[list[int]]):
    """Batches with a fixed share of generated samples (GDA, Zheng et al., NeurIPS 2023).

    Paper: Zheng, Wu, Li, "Toward Understanding Generative Data Augmentation", NeurIPS 2023,
    arXiv 2305.17476. Official sampler: ``ML-GSAI/Understanding-GDA`` ``data/semisup.py``
    (``SemiSupervisedSampler``), commit 00719a0.

    Every batch of ``B`` indices holds ``int(B * f)`` generated samples (uniform, with
    replacement) and ``B - int(B * f)`` real ones (a shuffled pass, without replacement), so the
    generated share of what the model sees is ``f`` regardless of how many samples were
    generated; ``f = 0.7`` is the official default. Index the concatenation of the two data sets
    (``torch.utils.data.ConcatDataset([real, synthetic])``: :meth:`from_sizes` builds the
    indices for it). The last batch of a pass over the real data is topped up with generated
    samples (the official behaviour). Differences from the official code: draws come from
    ``generator`` (the official sampler uses torch's global RNG and shuffles each batch with
    NumPy's global RNG); a share of exactly 0 or a negative value is not treated as "pool both
    sets" (the official ``unsup_fraction=None`` path): pass ``f = 0`` for real-only batches.

    Randomness: with a ``generator`` the global RNG is never touched and the sequence of epochs
    is reproducible; with None each epoch draws one seed from torch's global RNG.

    Args:
        real_indices: dataset indices of the real samples ``(N_r,)``.
        synthetic_indices: dataset indices of the generated samples ``(N_s,)``.
        batch_size: indices per batch, ``>= 1``.
        syn_fraction: generated share per batch in ``[0, 1)`` (default 0.7), or a schedule
            ``f(batch index)``.
        num_batches: batches per epoch; default one pass over the real indices.
        generator: a CPU ``torch.Generator``, or None.

    Raises:
        ValueError, TypeError: as :func:`gda_mix_batches`, at construction.

    Example:
        >>> import torch
        >>> sampler = GDAMixSampler.from_sizes(
        ...     30, 300, batch_size=10, generator=torch.Generator().manual_seed(0)
        ... )
        >>> len(sampler), [sum(i >= 30 for i in b) for b in sampler]
        (10, [7, 7, 7, 7, 7, 7, 7, 7, 7, 7])
    """

    def __init__(
        self,
        real_indices: Sequence[int] | torch.Tensor,
        synthetic_indices: Sequence[int] | torch.Tensor,
        batch_size: int,
        *,
        syn_fraction: Schedule = DEFAULT_SYN_FRACTION,
        num_batches: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        fn = "GDAMixSampler"
        self.real_indices = _indices(fn, "real_indices", real_indices)
        self.synthetic_indices = _indices(fn, "synthetic_indices", synthetic_indices)
        self.batch_size = _checks.check_int(fn, "batch_size", batch_size, min_value=1)
        _checks.check_generator(fn, generator, torch.device("cpu"))
        if self.real_indices.numel() == 0:
            raise ValueError(f"{fn}: real_indices must not be empty")
        if not callable(syn_fraction):
            f = _share(fn, syn_fraction, 0)
            if _synthetic_per_batch(self.batch_size, f) and self.synthetic_indices.numel() == 0:
                raise ValueError(
                    f"{fn}: syn_fraction={f} asks for generated samples but synthetic_indices "
                    "is empty"
                )
        self.syn_fraction = syn_fraction
        if num_batches is None:
            self.num_batches = _num_batches(
                self.real_indices.numel(), self.batch_size, syn_fraction, fn
            )
        else:
            self.num_batches = _checks.check_int(fn, "num_batches", num_batches, min_value=1)
        self.generator = generator

    @classmethod
    def from_sizes(
        cls,
        num_real: int,
        num_synthetic: int,
        batch_size: int,
        *,
        syn_fraction: Schedule = DEFAULT_SYN_FRACTION,
        num_batches: int | None = None,
        generator: torch.Generator | None = None,
    ) -> GDAMixSampler:
        """A sampler over ``ConcatDataset([real, synthetic])``: real ``0..num_real-1``, then
        generated ``num_real..num_real+num_synthetic-1`` (as the official code appends them)."""
        fn = "GDAMixSampler.from_sizes"
        nr = _checks.check_int(fn, "num_real", num_real, min_value=1)
        ns = _checks.check_int(fn, "num_synthetic", num_synthetic, min_value=0)
        return cls(
            torch.arange(nr),
            torch.arange(nr, nr + ns),
            batch_size,
            syn_fraction=syn_fraction,
            num_batches=num_batches,
            generator=generator,
        )

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        gen = _rng.epoch_generator(self.generator)
        for batch in gda_mix_batches(
            self.real_indices,
            self.synthetic_indices,
            batch_size=self.batch_size,
            syn_fraction=self.syn_fraction,
            num_batches=self.num_batches,
            generator=gen,
        ):
            yield batch.tolist()

    def __repr__(self) -> str:
        f = "schedule" if callable(self.syn_fraction) else self.syn_fraction
        return (
            f"GDAMixSampler(batch_size={self.batch_size}, syn_fraction={f}, "
            f"num_batches={self.num_batches}, real={self.real_indices.numel()}, "
            f"synthetic={self.synthetic_indices.numel()})"
        )
