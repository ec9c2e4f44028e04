"""The torch reference of the row log-sum-exp pair and the dispatcher of ``posneg._kernels``.

These tests need no triton: they check the reference against a naive float64 loop and against
torch autograd, the dispatcher's choice of path, ``triton_usable`` and the error messages. The
Triton kernels themselves are tested under the interpreter in ``test_lse_triton.py``.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import posneg._kernels as kernels
from posneg._kernels.reference import row_lse_backward_torch, row_lse_forward_torch


def naive_loop(
    q: torch.Tensor, k: torch.Tensor, g: torch.Tensor, scale: float, offsets: tuple[int, ...]
) -> tuple[list[float], list[list[float]], list[list[float]]]:
    """lse, dq, dk from the formula, one Python float64 scalar at a time."""
    b, m, d = q.shape[0], k.shape[0], q.shape[1]
    qd, kd, gd = q.double().tolist(), k.double().tolist(), g.double().tolist()
    score = [
        [scale * sum(qd[i][t] * kd[j][t] for t in range(d)) for j in range(m)] for i in range(b)
    ]
    kept = [[all(j != (i + o) % m for o in offsets) for j in range(m)] for i in range(b)]
    lse = []
    for i in range(b):
        vals = [score[i][j] for j in range(m) if kept[i][j]]
        top = max(vals) if vals else 0.0
        lse.append(top + math.log(sum(math.exp(v - top) for v in vals)) if vals else -math.inf)
    dq = [[0.0] * d for _ in range(b)]
    dk = [[0.0] * d for _ in range(m)]
    for i in range(b):
        for j in range(m):
            if not kept[i][j]:
                continue
            w = scale * gd[i] * math.exp(score[i][j] - lse[i])
            for t in range(d):
                dq[i][t] += w * kd[j][t]
                dk[j][t] += w * qd[i][t]
    return lse, dq, dk


def _inputs(b: int, m: int, d: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=gen, dtype=torch.float64)
    k = torch.randn(m, d, generator=gen, dtype=torch.float64)
    g = torch.randn(b, generator=gen, dtype=torch.float64)
    return q, k, g


@pytest.mark.parametrize(
    ("b", "m", "d", "offsets"),
    [(5, 5, 3, ()), (6, 6, 4, (0,)), (4, 8, 2, (0, 4)), (7, 3, 5, (1,)), (3, 9, 1, (0, 3, 8))],
)
def test_reference_matches_the_naive_float64_loop(b, m, d, offsets):
    q, k, g = _inputs(b, m, d)
    lse, dq, dk = naive_loop(q, k, g, 1.7, offsets)
    got = row_lse_forward_torch(q, k, scale=1.7, exclude_offsets=offsets, chunk_size=2)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(lse, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    gq, gk = row_lse_backward_torch(q, k, got, g, scale=1.7, exclude_offsets=offsets, chunk_size=3)
    torch.testing.assert_close(gq, torch.tensor(dq, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gk, torch.tensor(dk, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_reference_backward_is_the_gradient_of_its_forward():
    """The pair wrapped as an autograd function passes float64 gradcheck (offsets (0, B))."""

    class RowLSE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k):
            lse = row_lse_forward_torch(q, k, scale=0.8, exclude_offsets=(0, 3))
            ctx.save_for_backward(q, k, lse)
            return lse

        @staticmethod
        def backward(ctx, g):
            q, k, lse = ctx.saved_tensors
            return row_lse_backward_torch(q, k, lse, g, scale=0.8, exclude_offsets=(0, 3))

    q, k, _ = _inputs(5, 6, 3, seed=1)
    q.requires_grad_(True)
    k.requires_grad_(True)
    assert torch.autograd.gradcheck(RowLSE.apply, (q, k))


def test_chunking_does_not_change_the_reference():
    q, k, g = _inputs(9, 11, 4, seed=2)
    q, k, g = q.float(), k.float(), g.float()
    whole = row_lse_forward_torch(q, k, scale=2.0, exclude_offsets=(0,))
    rows = row_lse_forward_torch(q, k, scale=2.0, exclude_offsets=(0,), chunk_size=1)
    torch.testing.assert_close(rows, whole, rtol=1e-6, atol=1e-6)
    a = row_lse_backward_torch(q, k, whole, g, scale=2.0, exclude_offsets=(0,))
    b = row_lse_backward_torch(q, k, whole, g, scale=2.0, exclude_offsets=(0,), chunk_size=4)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_offsets_are_taken_mod_m():
    q, k, _ = _inputs(4, 5, 3, seed=3)
    base = row_lse_forward_torch(q, k, scale=1.0, exclude_offsets=(0, 4))
    same = row_lse_forward_torch(q, k, scale=1.0, exclude_offsets=(5, -1, 10))
    torch.testing.assert_close(same, base, rtol=0, atol=0)


def test_a_row_with_every_column_excluded_has_lse_minus_inf_and_no_gradient():
    q, k, g = _inputs(3, 1, 2, seed=4)
    lse = row_lse_forward_torch(q, k, scale=1.0, exclude_offsets=(0,))
    assert torch.isneginf(lse).all()
    dq, dk = row_lse_backward_torch(q, k, lse, g, scale=1.0, exclude_offsets=(0,))
    assert torch.equal(dq, torch.zeros_like(dq)) and torch.equal(dk, torch.zeros_like(dk))


def test_half_inputs_give_float32_lse_and_gradients_in_the_input_dtype():
    q, k, g = _inputs(4, 6, 8, seed=5)
    qh, kh = q.to(torch.bfloat16), k.to(torch.bfloat16)
    lse = row_lse_forward_torch(qh, kh, scale=1.0)
    assert lse.dtype == torch.float32
    exact = torch.logsumexp(qh.double() @ kh.double().T, dim=1)
    torch.testing.assert_close(lse.double(), exact, rtol=1e-6, atol=1e-6)
    dq, dk = row_lse_backward_torch(qh, kh, lse, g.float(), scale=1.0)
    assert dq.dtype == dk.dtype == torch.bfloat16


def test_dispatcher_uses_the_reference_on_cpu():
    q, k, g = _inputs(6, 6, 4, seed=6)
    q, k, g = q.float(), k.float(), g.float()
    lse = kernels.row_lse_forward(q, k, scale=3.0, exclude_offsets=(0, 3))
    torch.testing.assert_close(
        lse, row_lse_forward_torch(q, k, scale=3.0, exclude_offsets=(0, 3)), rtol=0, atol=0
    )
    dq, dk = kernels.row_lse_backward(q, k, lse, g, scale=3.0, exclude_offsets=(0, 3))
    rq, rk = row_lse_backward_torch(q, k, lse, g, scale=3.0, exclude_offsets=(0, 3))
    assert torch.equal(dq, rq) and torch.equal(dk, rk)


class _FakeCuda(torch.Tensor):
    """A CPU tensor that claims to live on a GPU (to reach the checks behind ``is_cuda``)."""

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


def test_triton_usable_is_false_on_cpu_and_when_disabled(monkeypatch):
    cpu = torch.zeros(2, 3)
    monkeypatch.delenv("POSNEG_DISABLE_TRITON", raising=False)
    assert kernels.triton_usable(cpu) is False
    assert kernels.triton_usable() is False
    assert kernels.triton_usable("not a tensor") is False
    fake = torch.Tensor._make_subclass(_FakeCuda, cpu)
    monkeypatch.setattr(kernels, "_triton_imports", lambda: True)
    assert kernels.triton_usable(fake) is True  # the checks below can fail
    assert kernels.triton_usable(fake, cpu) is False
    assert kernels.triton_usable(fake.double()) is False  # float64: the torch path
    monkeypatch.setenv("POSNEG_DISABLE_TRITON", "1")
    assert kernels.triton_usable(fake) is False
    monkeypatch.setattr(kernels, "_triton_imports", lambda: False)
    monkeypatch.setenv("POSNEG_DISABLE_TRITON", "0")
    assert kernels.triton_usable(fake) is False  # triton missing


def test_importing_posneg_and_the_torch_path_never_load_triton():
    code = (
        "import sys, torch, posneg, posneg.losses, posneg._kernels as k\n"
        "q = torch.randn(4, 3)\n"
        "lse = k.row_lse_forward(q, q, scale=1.0, exclude_offsets=(0,))\n"
        "k.row_lse_backward(q, q, lse, torch.ones(4), scale=1.0)\n"
        "print('triton' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_max_exclude_agrees_with_the_kernels_module():
    from posneg._kernels import lse_triton

    assert kernels.MAX_EXCLUDE == lse_triton.MAX_EXCLUDE


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda q, k: row_lse_forward_torch([1.0], k, scale=1.0), TypeError, "q must be a torch"),
        (
            lambda q, k: row_lse_forward_torch(q, k[:, :2], scale=1.0),
            ValueError,
            "k must have dimension D=3",
        ),
        (
            lambda q, k: row_lse_forward_torch(q, k.double(), scale=1.0),
            TypeError,
            "k has dtype torch.float64 but q has torch.float32",
        ),
        (lambda q, k: row_lse_forward_torch(q, k, scale=math.nan), ValueError, "scale must be"),
        (
            lambda q, k: row_lse_forward_torch(q, k, scale=1.0, exclude_offsets=0),
            TypeError,
            "exclude_offsets must be a tuple of ints",
        ),
        (
            lambda q, k: row_lse_forward_torch(q, k, scale=1.0, exclude_offsets=(True,)),
            TypeError,
            "exclude_offsets[] must be an int",
        ),
        (
            lambda q, k: row_lse_backward_torch(q, k, torch.zeros(3), torch.zeros(4), scale=1.0),
            ValueError,
            "lse must have shape (4,)",
        ),
        (
            lambda q, k: kernels.row_lse_backward(q, k, torch.zeros(4), "g", scale=1.0),
            TypeError,
            "row_lse_backward_torch: grad_lse must be a torch.Tensor",
        ),
    ],
)
def test_errors_name_the_function_and_the_argument(call, error, message):
    q, k = torch.zeros(4, 3), torch.zeros(5, 3)
    with pytest.raises(error, match=r"row_lse_(forward|backward)_torch: ") as info:
        call(q, k)
    assert message in str(info.value)
