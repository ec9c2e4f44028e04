"""MoCo's memory queue: a fixed-capacity FIFO of keys whose contents serve as negatives.

He, Fan, Wu, Xie, Girshick. *Momentum Contrast for Unsupervised Visual Representation Learning*.
CVPR 2020, arXiv 1911.05722.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from posneg import _checks

__all__ = ["CITATION", "MemoryQueue"]

CITATION = """
@inproceedings{he2020moco,
  title     = {Momentum Contrast for Unsupervised Visual Representation Learning},
  author    = {He, Kaiming and Fan, Haoqi and Wu, Yuxin and Xie, Saining and Girshick, Ross},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern
               Recognition (CVPR)},
  pages     = {9729--9738},
  year      = {2020},
  eprint    = {1911.05722},
  archivePrefix = {arXiv}
}
"""

_STATE_KEYS = ("buffer", "ptr", "size")


class MemoryQueue:
    """MoCo-style FIFO memory of keys with a fixed capacity.

    He et al., *Momentum Contrast for Unsupervised Visual Representation Learning*, CVPR 2020
    (arXiv 1911.05722). After each step the (momentum-encoder) keys of the batch are enqueued and
    the oldest keys are dropped once ``capacity`` keys are held. The queue's contents are the
    negatives of the next steps: pass ``queue.negatives()`` to a loss as ``negatives=`` (for
    example :func:`posneg.losses.info_nce`) or to :class:`posneg.negatives.MoCHi`.

    Storage is a ring buffer of shape ``(capacity, dim)``. Unlike the MoCo reference code, which
    fills the queue with random unit vectors at start-up, this queue starts empty and
    :meth:`negatives` returns only the rows filled so far, so no random vectors act as negatives.

    Keys are stored detached (``keys.detach()``): no gradient flows into the queue, as in MoCo.
    Under ``torch.distributed`` MoCo enqueues the keys of all ranks; gather them first (for
    example with :func:`posneg.distributed.gather_with_grad` on detached keys) so that every
    rank's queue holds the same contents.

    Args:
        capacity: the number of keys K the queue holds (K >= 1).
        dim: the key dimension D (D >= 1).
        dtype: floating dtype of the storage. Enqueued keys must have this dtype (no silent
            casts; under autocast call ``keys.float()`` first, as MoCo's code does).
        device: where the storage lives. Enqueued keys must be on this device.

    Raises:
        TypeError: ``capacity``/``dim`` are not ints, ``dtype`` is not a floating dtype.
        ValueError: ``capacity`` or ``dim`` < 1.

    Example:
        >>> import torch
        >>> queue = MemoryQueue(4, 2)
        >>> queue.enqueue(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        >>> queue.enqueue(torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
        >>> len(queue)
        4
        >>> queue.negatives()  # oldest first; [1, 0] was dropped
        tensor([[0., 1.],
                [1., 1.],
                [2., 0.],
                [0., 2.]])
    """

    def __init__(
        self,
        capacity: int,
        dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        fn = "MemoryQueue"
        self._capacity = _checks.check_int(fn, "capacity", capacity, min_value=1)
        self._dim = _checks.check_int(fn, "dim", dim, min_value=1)
        if not isinstance(dtype, torch.dtype) or dtype not in _checks.FLOAT_DTYPES:
            raise TypeError(
                f"{fn}: dtype must be a floating torch.dtype (float16, bfloat16, float32 or "
                f"float64); got {dtype!r}"
            )
        if not isinstance(device, (str, torch.device)):
            raise TypeError(
                f"{fn}: device must be a str or torch.device; got {type(device).__name__}"
            )
        self._buffer = torch.zeros(self._capacity, self._dim, dtype=dtype, device=device)
        self._ptr = 0  # next row to write
        self._size = 0  # rows filled so far (<= capacity)

    # ------------------------------------------------------------------ properties
    @property
    def capacity(self) -> int:
        """The number of keys the queue holds when full (K)."""
        return self._capacity

    @property
    def dim(self) -> int:
        """The key dimension D."""
        return self._dim

    @property
    def dtype(self) -> torch.dtype:
        """The storage dtype."""
        return self._buffer.dtype

    @property
    def device(self) -> torch.device:
        """The storage device."""
        return self._buffer.device

    @property
    def is_full(self) -> bool:
        """Whether ``capacity`` keys are held."""
        return self._size == self._capacity

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"MemoryQueue(capacity={self._capacity}, dim={self._dim}, dtype={self.dtype}, "
            f"device={self.device}, filled={self._size})"
        )

    # ------------------------------------------------------------------ updates
    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Append ``keys`` (n, D), dropping the oldest rows beyond ``capacity``.

        Any n >= 0 is accepted. When n >= capacity only the newest ``capacity`` keys (the last
        rows of ``keys``) are kept. Writes wrap around the ring buffer. Keys are stored detached.

        Args:
            keys: (n, D) tensor with the queue's dtype, on the queue's device.

        Raises:
            TypeError: ``keys`` is not a tensor or its dtype differs from the queue's.
            ValueError: ``keys`` is not 2-D, its last dimension is not D, it lives on another
                device, or it holds NaN or inf (the queue is left unchanged: a non-finite key
                would turn every later loss that reads it as a negative into NaN).
        """
        fn = "MemoryQueue.enqueue"
        _checks.check_float(fn, "keys", keys)
        if keys.dim() != 2 or keys.shape[1] != self._dim:
            raise ValueError(
                f"{fn}: keys must have shape (n, {self._dim}); got {tuple(keys.shape)}"
            )
        if keys.device != self.device:
            raise ValueError(
                f"{fn}: keys is on {keys.device} but the queue is on {self.device}; "
                "move them to one device"
            )
        if keys.dtype != self.dtype:
            raise TypeError(
                f"{fn}: keys has dtype {keys.dtype} but the queue stores {self.dtype}; "
                f"cast with keys.to({self.dtype})"
            )
        n = int(keys.shape[0])
        if n == 0:
            return
        _checks.check_finite(fn, "keys", keys)
        cap = self._capacity
        kept = keys.detach()[-cap:] if n > cap else keys.detach()
        m = int(kept.shape[0])
        # The first kept row lands where the (n - m)-th key would have been written.
        start = (self._ptr + n - m) % cap
        first = min(m, cap - start)
        self._buffer[start : start + first].copy_(kept[:first])
        if first < m:
            self._buffer[: m - first].copy_(kept[first:])
        self._ptr = (self._ptr + n) % cap
        self._size = min(self._size + n, cap)

    def clear(self) -> None:
        """Empty the queue (the storage is zeroed)."""
        self._buffer.zero_()
        self._ptr = 0
        self._size = 0

    # ------------------------------------------------------------------ reads
    def negatives(self) -> torch.Tensor:
        """The filled rows, oldest first: a new (len(self), D) tensor, detached from the queue.

        A copy is returned (as MoCo's ``queue.clone().detach()``), so a later :meth:`enqueue`,
        done before ``backward``, cannot modify a tensor autograd saved.
        """
        if self._size < self._capacity:
            return self._buffer[: self._size].clone()
        if self._ptr == 0:
            return self._buffer.clone()
        return torch.cat([self._buffer[self._ptr :], self._buffer[: self._ptr]], dim=0)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The queue's state: ``buffer`` (capacity, D) in ring order, ``ptr`` and ``size``.

        All values are tensors, so ``torch.save`` / ``torch.load(..., weights_only=True)``
        round-trip it.
        """
        return {
            "buffer": self._buffer.clone(),
            "ptr": torch.tensor(self._ptr, dtype=torch.int64),
            "size": torch.tensor(self._size, dtype=torch.int64),
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` of a queue with the same capacity, dim and dtype.

        The buffer is copied onto this queue's device (a GPU checkpoint loads into a CPU queue).

        Raises:
            TypeError: ``state`` is not a mapping of the expected entries, the buffer's dtype
                differs from this queue's, or ``ptr``/``size`` are not integers.
            ValueError: missing or unexpected keys, a buffer of another shape or holding NaN or
                inf, ``ptr``/``size`` out of range or inconsistent (a queue that is not full has
                ``ptr == size``).
        """
        fn = "MemoryQueue.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"{fn}: state must be a dict; got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        extra = sorted(str(k) for k in state if k not in _STATE_KEYS)
        if missing or extra:
            raise ValueError(
                f"{fn}: state must have exactly the keys {list(_STATE_KEYS)}; "
                f"missing {missing}, unexpected {extra}"
            )
        buffer = _checks.check_float(fn, "state['buffer']", state["buffer"])
        expected = (self._capacity, self._dim)
        if tuple(buffer.shape) != expected:
            raise ValueError(
                f"{fn}: state['buffer'] must have shape {expected}; got {tuple(buffer.shape)}"
            )
        if buffer.dtype != self.dtype:
            raise TypeError(
                f"{fn}: state['buffer'] has dtype {buffer.dtype} but the queue stores {self.dtype}"
            )
        _checks.check_finite(fn, "state['buffer']", buffer)
        ptr = _as_int(fn, "ptr", state["ptr"])
        size = _as_int(fn, "size", state["size"])
        if not 0 <= size <= self._capacity:
            raise ValueError(f"{fn}: state['size'] must be in [0, {self._capacity}]; got {size}")
        if not 0 <= ptr < self._capacity:
            raise ValueError(f"{fn}: state['ptr'] must be in [0, {self._capacity}); got {ptr}")
        if size < self._capacity and ptr != size:
            raise ValueError(
                f"{fn}: a queue that is not full must have ptr == size; got ptr={ptr}, size={size}"
            )
        with torch.no_grad():
            self._buffer.copy_(buffer.detach().to(self.device))
        self._ptr = ptr
        self._size = size

    def to(self, device: torch.device | str) -> MemoryQueue:
        """Move the storage to ``device`` (in place); returns ``self``."""
        self._buffer = self._buffer.to(device)
        return self


def _as_int(fn: str, name: str, value: Any) -> int:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype.is_floating_point or value.dtype == torch.bool:
            raise TypeError(
                f"{fn}: state['{name}'] must be an integer scalar; got a tensor of shape "
                f"{tuple(value.shape)} and dtype {value.dtype}"
            )
        return int(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: state['{name}'] must be an integer; got {type(value).__name__}")
    return int(value)
