"""posneg's contrastive losses and MemoryQueue against lightly 1.6 (``lightly/loss/`` files
``ntx_ent_loss.py`` and ``dcl_loss.py``, ``lightly/models/modules/memory_bank.py``).

- ``NTXentLoss`` without a memory bank is SimCLR's NT-Xent over 2B anchors: posneg's
  ``nt_xent`` / ``NTXentLoss`` (values and gradients).
- ``NTXentLoss`` with a memory bank scores each anchor against its positive and the bank only
  (no in-batch negatives): posneg's ``info_nce`` applied to one pair at a time with the bank as
  ``negatives``; posneg's batch ``info_nce`` adds the B - 1 in-batch keys on purpose (MoCo's
  form keeps them out too, so the batch call is an upper bound; shown below).
- ``DCLLoss`` / ``DCLWLoss``: one log-sum-exp over all 2B - 2 negatives, mean of the two views:
  posneg's ``dcl`` / ``dclw``. lightly's weights are detached (built with ``torch.tensor``):
  posneg's ``detach_weights=True`` gives the same gradients, its default does not.
- ``MemoryBankModule`` vs ``MemoryQueue``: lightly starts from random unit vectors and, when a
  batch overflows the end, keeps only the part that fits and restarts at slot 0; posneg starts
  empty and wraps (a ring buffer). Same contents when the capacity is a multiple of the batch.

lightly has no hard-negative (HCL) loss, so ``posneg.losses.hcl`` has no peer here.
"""

from __future__ import annotations

import pytest
import torch
from _peer import peer

from posneg.losses import DCLLoss, DCLWLoss, NTXentLoss, dcl, dclw, info_nce, nt_xent
from posneg.negatives import MemoryQueue

peer("torchvision")  # lightly imports torchvision: skip cleanly where it is broken
lightly_loss = peer("lightly.loss")
lightly_bank = peer("lightly.models.modules.memory_bank")

# lightly's DCLW weights are built with torch.tensor(tensor), which warns; not posneg's concern
pytestmark = pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")


def _views(b: int = 8, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g, dtype=torch.float64)
    return z1, z1 + 0.7 * torch.randn(b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
@pytest.mark.parametrize("b", [2, 9])
def test_ntxent_equals_lightly(temperature: float, b: int) -> None:
    z1, z2 = _views(b)
    want = lightly_loss.NTXentLoss(temperature=temperature)(z1, z2)
    torch.testing.assert_close(nt_xent(z1, z2, temperature=temperature), want)
    torch.testing.assert_close(NTXentLoss(temperature=temperature)(z1, z2), want)


def test_ntxent_gradients_equal_lightly() -> None:
    z1, z2 = _views(6)
    a1, a2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    p1, p2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    lightly_loss.NTXentLoss(temperature=0.2)(a1, a2).backward()
    nt_xent(p1, p2, temperature=0.2).backward()
    torch.testing.assert_close(p1.grad, a1.grad)
    torch.testing.assert_close(p2.grad, a2.grad)


def _bank_loss(b: int, k: int, d: int, t: float) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """lightly's NT-Xent with a (k, d) memory bank (float32, lightly's dtype), its bank."""
    z1, z2 = (v.float() for v in _views(b, d))
    with torch.random.fork_rng():
        torch.manual_seed(0)  # lightly fills the bank from the global RNG
        fn = lightly_loss.NTXentLoss(temperature=t, memory_bank_size=(k, d))
    bank = fn.memory_bank.bank.clone()
    return fn(z1, z2), bank, (z1, z2)


def test_ntxent_memory_bank_equals_info_nce_one_pair_at_a_time() -> None:
    t = 0.1
    want, bank, (z1, z2) = _bank_loss(6, 32, 8, t)
    per_pair = torch.stack(
        [info_nce(z1[i : i + 1], z2[i : i + 1], negatives=bank, temperature=t) for i in range(6)]
    )
    torch.testing.assert_close(per_pair.mean(), want, rtol=1e-5, atol=1e-6)


def test_ntxent_memory_bank_has_no_in_batch_negatives() -> None:
    """Deliberate difference. lightly (and MoCo) score a query against its key and the bank;
    posneg's batch ``info_nce(q, k, negatives=bank)`` also counts the other B - 1 keys of the
    batch as negatives, so every anchor's loss is at least lightly's."""
    t = 0.1
    want, bank, (z1, z2) = _bank_loss(6, 32, 8, t)
    batch = info_nce(z1, z2, negatives=bank, temperature=t, reduction="none")
    alone = torch.stack(
        [info_nce(z1[i : i + 1], z2[i : i + 1], negatives=bank, temperature=t) for i in range(6)]
    )
    assert bool((batch > alone).all())
    assert batch.mean().item() > want.item() + 1e-3


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_dcl_equals_lightly(temperature: float) -> None:
    z1, z2 = _views(7)
    want = lightly_loss.DCLLoss(temperature=temperature)(z1, z2)
    torch.testing.assert_close(dcl(z1, z2, temperature=temperature), want)
    torch.testing.assert_close(DCLLoss(temperature=temperature)(z1, z2), want)


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_dclw_equals_lightly(sigma: float) -> None:
    z1, z2 = _views(7)
    want = lightly_loss.DCLWLoss(temperature=0.1, sigma=sigma)(z1, z2)
    torch.testing.assert_close(dclw(z1, z2, temperature=0.1, sigma=sigma), want)
    got = DCLWLoss(temperature=0.1, sigma=sigma, detach_weights=True)(z1, z2)
    torch.testing.assert_close(got, want)


def _dclw_grads(detach: bool | None) -> tuple[torch.Tensor, torch.Tensor]:
    z1, z2 = _views(5)
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    if detach is None:
        lightly_loss.DCLWLoss(temperature=0.1, sigma=0.5)(a, b).backward()
    else:
        dclw(a, b, temperature=0.1, sigma=0.5, detach_weights=detach).backward()
    assert a.grad is not None and b.grad is not None
    return a.grad, b.grad


def test_dclw_detached_gradients_equal_lightly() -> None:
    for got, want in zip(_dclw_grads(True), _dclw_grads(None), strict=True):
        torch.testing.assert_close(got, want)


def test_dclw_default_gradients_differ_from_lightly() -> None:
    """Deliberate difference. posneg's default lets the gradient flow through the vMF weights
    (raminnakhli/Decoupled-Contrastive-Learning); lightly detaches them."""
    got, want = _dclw_grads(False)[0], _dclw_grads(None)[0]
    assert (got - want).abs().max().item() > 1e-4


def _lightly_bank(k: int, d: int) -> object:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return lightly_bank.MemoryBankModule(size=(k, d), feature_dim_first=False)


def _batches(n: int, b: int, d: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randn(b, d, generator=g) for _ in range(n)]


def test_memory_bank_contents_equal_queue_when_capacity_is_a_multiple() -> None:
    """Capacity 8, batches of 4: after the bank is full both hold the last 8 keys, oldest first
    (lightly's slot order once its pointer is back at 0)."""
    bank, queue = _lightly_bank(8, 3), MemoryQueue(8, 3)
    for keys in _batches(4, 4, 3):
        bank(keys, update=True)  # type: ignore[operator]
        queue.enqueue(keys)
    _, stored = bank(torch.zeros(1, 3), update=False)  # type: ignore[operator]
    torch.testing.assert_close(queue.negatives(), stored)


def test_memory_bank_differs_from_queue_on_overflow_and_at_start() -> None:
    """Deliberate differences. Capacity 6, batches of 4: lightly writes only the first 2 keys of
    the second batch (it drops the rest and restarts at slot 0), posneg keeps the newest 6
    keys. At the start lightly's bank holds 6 random unit vectors, posneg's queue nothing."""
    bank, queue = _lightly_bank(6, 3), MemoryQueue(6, 3)
    _, start = bank(torch.zeros(1, 3), update=False)  # type: ignore[operator]
    assert start.shape == (6, 3) and len(queue) == 0
    torch.testing.assert_close(start.norm(dim=1), torch.ones(6))
    b1, b2 = _batches(2, 4, 3)
    for keys in (b1, b2):
        bank(keys, update=True)  # type: ignore[operator]
        queue.enqueue(keys)
    _, stored = bank(torch.zeros(1, 3), update=False)  # type: ignore[operator]
    torch.testing.assert_close(stored, torch.cat([b1, b2[:2]]))
    torch.testing.assert_close(queue.negatives(), torch.cat([b1[2:], b2]))
