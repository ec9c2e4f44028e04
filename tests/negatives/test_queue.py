"""MemoryQueue: MoCo's FIFO of keys against a naive list model and pytorch-metric-learning's
CrossBatchMemory ring, state round-trips, storage semantics, errors."""

from __future__ import annotations

import io
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.negatives import MemoryQueue


def naive_fifo(batches: list[torch.Tensor], capacity: int) -> torch.Tensor:
    """The paper's queue as a Python list: append every key, keep the newest ``capacity``."""
    rows: list[torch.Tensor] = []
    for b in batches:
        for row in b:
            rows.append(row)
            if len(rows) > capacity:
                rows.pop(0)
    if not rows:
        return torch.empty(0, batches[0].shape[1] if batches else 0, dtype=torch.float64)
    return torch.stack(rows)


def run(queue: MemoryQueue, sizes: list[int], dim: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randn(n, dim, generator=g, dtype=torch.float64) for n in sizes]
    for b in batches:
        queue.enqueue(b)
    return batches


# ----------------------------------------------------------------------------- 1. formula
@settings(max_examples=30, deadline=None)
@given(
    capacity=st.integers(1, 9),
    dim=st.integers(1, 4),
    sizes=st.lists(st.integers(0, 20), min_size=1, max_size=8),
)
def test_matches_naive_fifo(capacity: int, dim: int, sizes: list[int]) -> None:
    queue = MemoryQueue(capacity, dim, dtype=torch.float64)
    batches = run(queue, sizes, dim)
    expected = naive_fifo(batches, capacity)
    got = queue.negatives()
    assert len(queue) == expected.shape[0] == min(sum(sizes), capacity)
    assert got.shape == (len(queue), dim)
    assert torch.equal(got, expected)
    assert queue.is_full == (sum(sizes) >= capacity)


def test_wraparound_and_oversized_batch_by_hand() -> None:
    queue = MemoryQueue(3, 1, dtype=torch.float64)
    col = lambda *v: torch.tensor(v, dtype=torch.float64)[:, None]  # noqa: E731
    queue.enqueue(col(1, 2))
    assert queue.negatives().flatten().tolist() == [1, 2]
    queue.enqueue(col(3, 4))  # wraps: 1 dropped
    assert queue.negatives().flatten().tolist() == [2, 3, 4]
    queue.enqueue(col(5, 6, 7, 8, 9))  # larger than capacity: newest 3 kept
    assert queue.negatives().flatten().tolist() == [7, 8, 9]
    queue.enqueue(col(10))
    assert queue.negatives().flatten().tolist() == [8, 9, 10]
    queue.enqueue(col())  # empty batch: no-op
    assert queue.negatives().flatten().tolist() == [8, 9, 10]


# ----------------------------------------------------------------------------- 2. reference
@settings(max_examples=20, deadline=None)
@given(
    capacity=st.integers(1, 9),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8),
)
def test_ring_matches_pml_cross_batch_memory(capacity: int, sizes: list[int]) -> None:
    from pytorch_metric_learning.losses import CrossBatchMemory, NTXentLoss

    sizes = [min(n, capacity) for n in sizes]  # PML's ring takes batches up to memory_size
    dim = 3
    ref = CrossBatchMemory(NTXentLoss(), embedding_size=dim, memory_size=capacity)
    ref.embedding_memory = ref.embedding_memory.double()
    queue = MemoryQueue(capacity, dim, dtype=torch.float64)
    for b in run(queue, sizes, dim):
        ref.add_to_memory(b, torch.zeros(b.shape[0], dtype=torch.long), b.shape[0])
    state = queue.state_dict()
    filled = capacity if ref.has_been_filled else ref.queue_idx
    assert int(state["ptr"]) == ref.queue_idx
    assert int(state["size"]) == filled
    assert torch.equal(state["buffer"][:filled], ref.embedding_memory[:filled])


# ----------------------------------------------------------------------------- 3. properties
def test_storage_is_detached_and_copied() -> None:
    keys = torch.randn(4, 3, requires_grad=True)
    queue = MemoryQueue(8, 3)
    queue.enqueue(keys)
    neg = queue.negatives()
    assert not neg.requires_grad
    with torch.no_grad():
        keys.mul_(0)  # the queue holds its own copy
    assert not torch.equal(queue.negatives(), torch.zeros(4, 3))
    neg.zero_()  # the caller's tensor is a copy too
    assert not torch.equal(queue.negatives(), neg)


def test_enqueue_before_backward_is_safe() -> None:
    # MoCo enqueues inside forward, before backward: the saved negatives must not change.
    queue = MemoryQueue(4, 3)
    queue.enqueue(torch.randn(4, 3))
    q = torch.randn(2, 3, requires_grad=True)
    neg = queue.negatives()
    before = neg.clone()
    loss = (q @ neg.T).logsumexp(1).sum()
    queue.enqueue(torch.randn(3, 3))
    loss.backward()
    assert torch.equal(neg, before)
    assert q.grad is not None


def test_state_dict_round_trip_through_torch_save() -> None:
    a = MemoryQueue(5, 2, dtype=torch.float64)
    run(a, [3, 4], 2, seed=1)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = MemoryQueue(5, 2, dtype=torch.float64)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(a.negatives(), b.negatives())
    assert len(a) == len(b)
    more = torch.randn(3, 2, dtype=torch.float64)
    a.enqueue(more)
    b.enqueue(more)
    assert torch.equal(a.negatives(), b.negatives())


def test_state_dict_of_partly_filled_queue() -> None:
    a = MemoryQueue(5, 2)
    a.enqueue(torch.randn(2, 2))
    b = MemoryQueue(5, 2)
    b.load_state_dict(a.state_dict())
    assert len(b) == 2 and torch.equal(a.negatives(), b.negatives())


def test_clear_len_repr_pickle() -> None:
    queue = MemoryQueue(4, 2, dtype=torch.float64)
    run(queue, [3], 2)
    assert len(queue) == 3 and not queue.is_full
    assert "capacity=4" in repr(queue) and "filled=3" in repr(queue)
    clone = pickle.loads(pickle.dumps(queue))
    assert torch.equal(clone.negatives(), queue.negatives())
    queue.clear()
    assert len(queue) == 0 and queue.negatives().shape == (0, 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_and_device(dtype: torch.dtype) -> None:
    queue = MemoryQueue(3, 2, dtype=dtype, device=torch.device("cpu"))
    queue.enqueue(torch.ones(2, 2, dtype=dtype))
    out = queue.negatives()
    assert out.dtype == dtype and out.device.type == "cpu"
    assert queue.dtype == dtype and queue.device.type == "cpu"
    assert queue.to("cpu") is queue


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_queue_matches_cpu() -> None:
    sizes = [3, 5, 2]
    cpu, gpu = MemoryQueue(6, 4), MemoryQueue(6, 4, device="cuda")
    g = torch.Generator().manual_seed(0)
    for n in sizes:
        b = torch.randn(n, 4, generator=g)
        cpu.enqueue(b)
        gpu.enqueue(b.cuda())
    assert torch.equal(cpu.negatives(), gpu.negatives().cpu())
    moved = MemoryQueue(6, 4)
    moved.load_state_dict(gpu.state_dict())  # a GPU checkpoint loads into a CPU queue
    assert torch.equal(moved.negatives(), cpu.negatives())


def test_contents_feed_info_nce_as_negatives() -> None:
    info_nce_mod = pytest.importorskip("posneg.losses.info_nce")
    queue = MemoryQueue(16, 8, dtype=torch.float64)
    queue.enqueue(torch.randn(16, 8, dtype=torch.float64))
    q, k = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    loss = info_nce_mod.info_nce(q, k, negatives=queue.negatives())
    assert torch.isfinite(loss)


# ----------------------------------------------------------------------------- 4. errors
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"capacity": 0, "dim": 2}, ValueError, "MemoryQueue: capacity must be >= 1; got 0"),
        ({"capacity": 2.0, "dim": 2}, TypeError, "MemoryQueue: capacity must be an int"),
        ({"capacity": True, "dim": 2}, TypeError, "MemoryQueue: capacity must be an int"),
        ({"capacity": 2, "dim": 0}, ValueError, "MemoryQueue: dim must be >= 1; got 0"),
        ({"capacity": 2, "dim": 2, "dtype": torch.int64}, TypeError, "dtype must be a floating"),
        ({"capacity": 2, "dim": 2, "device": 0}, TypeError, "device must be a str"),
    ],
)
def test_constructor_errors(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        MemoryQueue(**kwargs)  # type: ignore[arg-type]


def test_enqueue_errors() -> None:
    queue = MemoryQueue(4, 3)
    with pytest.raises(TypeError, match=r"enqueue: keys must be a torch.Tensor; got list"):
        queue.enqueue([[0.0, 0.0, 0.0]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"enqueue: keys must be a floating-point tensor"):
        queue.enqueue(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"enqueue: keys must have shape \(n, 3\); got \(3,\)"):
        queue.enqueue(torch.zeros(3))
    with pytest.raises(ValueError, match=r"enqueue: keys must have shape \(n, 3\); got \(2, 4\)"):
        queue.enqueue(torch.zeros(2, 4))
    with pytest.raises(TypeError, match=r"keys has dtype torch.float64 but the queue stores"):
        queue.enqueue(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"keys is on meta but the queue is on cpu"):
        queue.enqueue(torch.zeros(2, 3, device="meta"))
    assert len(queue) == 0  # nothing was written by the failed calls


def test_load_state_dict_errors() -> None:
    queue = MemoryQueue(4, 3)
    good = MemoryQueue(4, 3).state_dict()
    with pytest.raises(TypeError, match=r"load_state_dict: state must be a dict; got list"):
        queue.load_state_dict([])
    with pytest.raises(ValueError, match=r"missing \['ptr'\], unexpected \[\]"):
        queue.load_state_dict({"buffer": good["buffer"], "size": good["size"]})
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        queue.load_state_dict({**good, "extra": 1})
    with pytest.raises(
        ValueError, match=r"state\['buffer'\] must have shape \(4, 3\); got \(5, 3\)"
    ):
        queue.load_state_dict({**good, "buffer": torch.zeros(5, 3)})
    with pytest.raises(TypeError, match=r"state\['buffer'\] has dtype torch.float64"):
        queue.load_state_dict({**good, "buffer": torch.zeros(4, 3, dtype=torch.float64)})
    with pytest.raises(TypeError, match=r"state\['buffer'\] must be a torch.Tensor"):
        queue.load_state_dict({**good, "buffer": [0.0]})
    with pytest.raises(TypeError, match=r"state\['ptr'\] must be an integer scalar"):
        queue.load_state_dict({**good, "ptr": torch.tensor(1.0)})
    with pytest.raises(TypeError, match=r"state\['ptr'\] must be an integer; got str"):
        queue.load_state_dict({**good, "ptr": "1"})
    with pytest.raises(ValueError, match=r"state\['size'\] must be in \[0, 4\]; got 5"):
        queue.load_state_dict({**good, "size": torch.tensor(5)})
    with pytest.raises(ValueError, match=r"state\['ptr'\] must be in \[0, 4\); got 4"):
        queue.load_state_dict({**good, "ptr": 4, "size": 4})
    with pytest.raises(ValueError, match=r"not full must have ptr == size; got ptr=1, size=2"):
        queue.load_state_dict({**good, "ptr": 1, "size": 2})
    assert len(queue) == 0  # failed loads leave the queue untouched


def test_non_finite_keys_are_refused_and_leave_the_queue_unchanged() -> None:
    """Issue 22: NaN keys were stored and turned every later loss into NaN."""
    q = MemoryQueue(capacity=4, dim=2)
    q.enqueue(torch.ones(1, 2))
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match=r"MemoryQueue.enqueue: keys contains NaN or inf"):
            q.enqueue(torch.tensor([[0.0, 0.0], [bad, 1.0]]))
    assert len(q) == 1 and torch.equal(q.negatives(), torch.ones(1, 2))
    state = q.state_dict()
    state["buffer"][3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"load_state_dict: state\['buffer'\] contains NaN"):
        MemoryQueue(capacity=4, dim=2).load_state_dict(state)


def test_numpy_integers_are_accepted_like_ints() -> None:
    import numpy as np

    q = MemoryQueue(capacity=np.int64(3), dim=np.int32(2))
    assert (q.capacity, q.dim) == (3, 2) and type(q.capacity) is int
    with pytest.raises(TypeError, match="capacity must be an int; got bool"):
        MemoryQueue(capacity=np.bool_(True), dim=2)  # type: ignore[arg-type]
    state = q.state_dict()
    state["ptr"], state["size"] = np.int64(0), np.int64(0)
    q.load_state_dict(state)  # type: ignore[arg-type]
