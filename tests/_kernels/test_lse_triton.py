"""The Triton kernels of ``posneg._kernels.lse_triton``, run on CPU under Triton's interpreter.

``TRITON_INTERPRET=1`` must be in the environment when ``@triton.jit`` decorates the kernels, so
it is set at the top of this file, before ``posneg._kernels.lse_triton`` is imported (and the
module is reloaded if something imported it earlier without the interpreter). The variable only
changes how ``triton.jit`` builds kernels; nothing else in posneg reads it. Skipped when triton
is not installed; skipped too when the environment sets ``TRITON_INTERPRET`` to anything but 1.

Checked against two oracles: the tiled torch reference (``reference.py``, float32) and the
formula in float64 (a naive Python loop for the small shapes, a dense float64 computation for
all). Tolerances: inputs are unit rows and ``scale = 1/0.2`` (scores in [-5, 5]); float32
kernels must agree with both to 2e-5 (relative and absolute; the largest differences measured
over these cases were 1.2e-7 on lse and 1.5e-6 on the gradients, relative to 1 + |value|).
float16 and bfloat16 gradients must agree to 2e-3 and 2e-2 of their largest entry (measured:
6e-4 and 7e-3; the weights are rounded to the input dtype before the second product, as in
FlashAttention, and the gradient is stored in that dtype); their lse to 1e-5 (measured 3.4e-7:
half inputs are exact in fp32, only the sum rounds).
Runtime: about 11 s of CPU time on one core (the interpreter runs each program in numpy).
"""

from __future__ import annotations

import importlib
import math
import os

import pytest
import torch

os.environ.setdefault("TRITON_INTERPRET", "1")
if os.environ["TRITON_INTERPRET"] != "1":  # pragma: no cover
    pytest.skip("TRITON_INTERPRET is set to something other than 1", allow_module_level=True)
pytest.importorskip("triton")

import posneg._kernels as kernels
from posneg._kernels import lse_triton
from posneg._kernels.reference import (
    row_lse_backward_torch,
    row_lse_forward_torch,
)

if type(lse_triton._lse_fwd_kernel).__name__ != "InterpretedFunction":  # pragma: no cover
    lse_triton = importlib.reload(lse_triton)  # imported earlier without the interpreter

SCALE = 1 / 0.2


def _inputs(b: int, m: int, d: int, seed: int, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(b, d, generator=gen, dtype=torch.float64), dim=1)
    k = torch.nn.functional.normalize(torch.randn(m, d, generator=gen, dtype=torch.float64), dim=1)
    g = torch.randn(b, generator=gen, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), g


def dense_float64(q, k, g, scale, offsets):
    """lse, dq, dk from the formula in float64 (dense B x M; the oracle for every shape)."""
    qd, kd = q.double(), k.double()
    b, m = qd.shape[0], kd.shape[0]
    s = scale * qd @ kd.T
    cols = torch.arange(m)
    for o in offsets:
        s = s.masked_fill(cols[None, :] == ((torch.arange(b) + o) % m)[:, None], -math.inf)
    lse = torch.logsumexp(s, dim=1)
    p = torch.exp(s - torch.where(torch.isneginf(lse), 0.0, lse)[:, None])
    w = scale * g.double()[:, None] * p
    return lse, w @ kd, w.T @ qd


def naive_loop(q, k, g, scale, offsets):
    """The same, one Python float at a time (small shapes only)."""
    b, m, d = q.shape[0], k.shape[0], q.shape[1]
    qd, kd, gd = q.double().tolist(), k.double().tolist(), g.double().tolist()
    lse, dq, dk = [], [[0.0] * d for _ in range(b)], [[0.0] * d for _ in range(m)]
    for i in range(b):
        row = {
            j: scale * sum(qd[i][t] * kd[j][t] for t in range(d))
            for j in range(m)
            if all(j != (i + o) % m for o in offsets)
        }
        top = max(row.values(), default=0.0)
        lse.append(
            top + math.log(sum(math.exp(v - top) for v in row.values())) if row else -math.inf
        )
        for j, v in row.items():
            w = scale * gd[i] * math.exp(v - lse[i])
            for t in range(d):
                dq[i][t] += w * kd[j][t]
                dk[j][t] += w * qd[i][t]
    return (torch.tensor(x, dtype=torch.float64) for x in (lse, dq, dk))


def _close(got, want, tol):
    torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol)


# every B, M in {1, 7, 64, 130} and D in {1, 16, 33} appears; each with the three offset sets
SHAPES = [
    (1, 1, 1),
    (1, 7, 16),
    (7, 7, 33),
    (7, 130, 1),
    (64, 64, 16),
    (64, 1, 33),
    (130, 130, 33),
    (130, 7, 16),
    (130, 64, 1),
]


@pytest.mark.parametrize("offsets_kind", ["none", "self", "self_and_partner"])
@pytest.mark.parametrize(("b", "m", "d"), SHAPES)
def test_float32_kernels_match_the_reference_and_float64(b, m, d, offsets_kind):
    offsets = {"none": (), "self": (0,), "self_and_partner": (0, b)}[offsets_kind]
    q, k, g = _inputs(b, m, d, seed=b * 1000 + m * 10 + d)
    lse = lse_triton.row_lse_forward_triton(q, k, scale=SCALE, exclude_offsets=offsets)
    ref = row_lse_forward_torch(q, k, scale=SCALE, exclude_offsets=offsets)
    exact_lse, exact_dq, exact_dk = dense_float64(q, k, g, SCALE, offsets)
    assert lse.dtype == torch.float32 and lse.shape == (b,)
    _close(lse, ref, 2e-5)
    _close(lse, exact_lse, 2e-5)
    dq, dk = lse_triton.row_lse_backward_triton(
        q, k, lse, g.float(), scale=SCALE, exclude_offsets=offsets
    )
    rq, rk = row_lse_backward_torch(q, k, ref, g.float(), scale=SCALE, exclude_offsets=offsets)
    assert dq.dtype == dk.dtype == torch.float32
    _close(dq, rq, 2e-5)
    _close(dk, rk, 2e-5)
    _close(dq, exact_dq, 2e-5)
    _close(dk, exact_dk, 2e-5)
    if b * m <= 64:
        loop_lse, loop_dq, loop_dk = naive_loop(q, k, g, SCALE, offsets)
        _close(lse, loop_lse, 2e-5)
        _close(dq, loop_dq, 2e-5)
        _close(dk, loop_dk, 2e-5)


def test_small_tiles_cross_every_tile_and_chunk_boundary():
    """16 x 16 tiles and 16-wide D chunks: 3 row tiles, 3 column tiles, 2 D chunks, ragged."""
    q, k, g = _inputs(33, 40, 20, seed=7)
    blocks = lse_triton.Blocks(16, 16, 16, 16)
    offsets = (0, 33, 3)
    lse = lse_triton.row_lse_forward_triton(
        q, k, scale=SCALE, exclude_offsets=offsets, blocks=blocks
    )
    dq, dk = lse_triton.row_lse_backward_triton(
        q, k, lse, g.float(), scale=SCALE, exclude_offsets=offsets, blocks=blocks
    )
    exact_lse, exact_dq, exact_dk = dense_float64(q, k, g, SCALE, offsets)
    _close(lse, exact_lse, 2e-5)
    _close(dq, exact_dq, 2e-5)
    _close(dk, exact_dk, 2e-5)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_kernels(dtype, tol):
    q, k, g = _inputs(70, 64, 33, seed=8, dtype=dtype)
    lse = lse_triton.row_lse_forward_triton(q, k, scale=SCALE, exclude_offsets=(0, 35))
    exact_lse, exact_dq, exact_dk = dense_float64(q, k, g, SCALE, (0, 35))
    _close(lse, exact_lse, 1e-5)  # the half inputs are exact in fp32; only the sum rounds
    dq, dk = lse_triton.row_lse_backward_triton(
        q, k, lse, g.float(), scale=SCALE, exclude_offsets=(0, 35)
    )
    assert dq.dtype == dk.dtype == dtype
    scale_q, scale_k = exact_dq.abs().max(), exact_dk.abs().max()
    torch.testing.assert_close(dq.double() / scale_q, exact_dq / scale_q, rtol=tol, atol=tol)
    torch.testing.assert_close(dk.double() / scale_k, exact_dk / scale_k, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    ("b", "m", "d", "offsets", "rows", "blocks"),
    [
        (33, 40, 20, (0, 33, 3), 16, (16, 16, 16, 16)),  # 3 row chunks, ragged tiles
        (130, 130, 33, (0,), 64, None),
        (7, 1, 1, (0,), None, None),  # every column excluded
        (20, 7, 16, (), 1, None),  # one row per chunk
    ],
)
def test_chunked_backward_matches_float64(b, m, d, offsets, rows, blocks):
    q, k, g = _inputs(b, m, d, seed=11 + b)
    lse = lse_triton.row_lse_forward_triton(q, k, scale=SCALE, exclude_offsets=offsets)
    dq, dk = lse_triton.row_lse_backward_triton(
        q, k, lse, g.float(), scale=SCALE, exclude_offsets=offsets, method="chunked",
        chunk_rows=rows, blocks=None if blocks is None else lse_triton.Blocks(*blocks),
    )  # fmt: skip
    _, exact_dq, exact_dk = dense_float64(q, k, g, SCALE, offsets)
    _close(dq, exact_dq, 2e-5)
    _close(dk, exact_dk, 2e-5)


def test_chunked_backward_in_bfloat16():
    q, k, g = _inputs(70, 64, 33, seed=12, dtype=torch.bfloat16)
    lse = lse_triton.row_lse_forward_triton(q, k, scale=SCALE, exclude_offsets=(0, 35))
    dq, dk = lse_triton.row_lse_backward_triton(
        q, k, lse, g.float(), scale=SCALE, exclude_offsets=(0, 35), method="chunked",
        chunk_rows=32,
    )  # fmt: skip
    _, exact_dq, exact_dk = dense_float64(q, k, g, SCALE, (0, 35))
    assert dq.dtype == dk.dtype == torch.bfloat16
    for got, want in ((dq, exact_dq), (dk, exact_dk)):
        top = want.abs().max()
        torch.testing.assert_close(got.double() / top, want / top, rtol=2e-2, atol=2e-2)


def test_auto_takes_the_chunked_backward_above_fused_max_d(monkeypatch):
    seen = []
    chunked = lse_triton._backward_chunked

    def spy(*args):
        seen.append(int(args[0].shape[1]))
        return chunked(*args)

    monkeypatch.setattr(lse_triton, "_backward_chunked", spy)
    for d in (lse_triton.FUSED_MAX_D, lse_triton.FUSED_MAX_D + 1):
        q, k, g = _inputs(5, 6, d, seed=d)
        lse = lse_triton.row_lse_forward_triton(q, k, scale=SCALE)
        dq, dk = lse_triton.row_lse_backward_triton(q, k, lse, g.float(), scale=SCALE)
        _, exact_dq, exact_dk = dense_float64(q, k, g, SCALE, ())
        _close(dq, exact_dq, 2e-5)
        _close(dk, exact_dk, 2e-5)
    assert seen == [lse_triton.FUSED_MAX_D + 1]


def test_strided_inputs_are_read_through_their_strides():
    q, k, g = _inputs(33, 20, 16, seed=9)
    qt = q.T.contiguous().T  # column-major (33, 16)
    kw = torch.stack([k, k], dim=2)[:, :, 0]  # stride 2 along D
    assert not qt.is_contiguous() and not kw.is_contiguous()
    for offsets in ((), (0,)):
        lse = lse_triton.row_lse_forward_triton(qt, kw, scale=SCALE, exclude_offsets=offsets)
        dq, dk = lse_triton.row_lse_backward_triton(
            qt, kw, lse, g.float(), scale=SCALE, exclude_offsets=offsets
        )
        exact_lse, exact_dq, exact_dk = dense_float64(q, k, g, SCALE, offsets)
        _close(lse, exact_lse, 2e-5)
        _close(dq, exact_dq, 2e-5)
        _close(dk, exact_dk, 2e-5)


def test_the_dispatcher_launches_the_kernels_when_triton_is_usable(monkeypatch):
    """With ``triton_usable`` forced on (CPU tensors under the interpreter), the public functions
    go through the kernels: a spy on the launcher sees the calls."""
    calls = []
    forward = lse_triton.row_lse_forward_triton

    def spy(*args, **kw):
        calls.append(kw["exclude_offsets"])
        return forward(*args, **kw)

    monkeypatch.setattr(kernels, "triton_usable", lambda *t: True)
    monkeypatch.setattr(lse_triton, "row_lse_forward_triton", spy)
    q, k, _ = _inputs(9, 9, 16, seed=10)
    kernels.row_lse_forward(q, k, scale=SCALE, exclude_offsets=(0,))
    kernels.row_lse_forward(q, k, scale=SCALE, exclude_offsets=(0, 1, 2, 3, 4))  # > MAX_EXCLUDE
    assert calls == [(0,)]


def test_launcher_errors():
    q = torch.zeros(8, 16)
    with pytest.raises(TypeError, match="row_lse_forward_triton: q must be float16, bfloat16"):
        lse_triton.row_lse_forward_triton(q.double(), q.double(), scale=1.0)
    with pytest.raises(ValueError, match="row_lse_backward_triton: exclude_offsets takes at most"):
        lse_triton.row_lse_backward_triton(
            q, q, torch.zeros(8), torch.zeros(8), scale=1.0, exclude_offsets=(0, 1, 2, 3, 4)
        )
    with pytest.raises(ValueError, match="row_lse_backward_triton: method must be 'auto'"):
        lse_triton.row_lse_backward_triton(
            q, q, torch.zeros(8), torch.zeros(8), scale=1.0, method="dense"
        )
    with pytest.raises(ValueError, match="Blocks: block_d must be a power of two >= 16"):
        lse_triton.Blocks(16, 16, 24, 16)
