# mypy: disable-error-code="no-untyped-def"
"""Triton kernels for the row log-sum-exp pair (FlashAttention-2 style), and their launchers.

The formula is the one of :mod:`posneg._kernels.reference`: ``lse_i = log sum_{j not excluded}
exp(s <q_i, k_j>)`` and its gradients ``dq_i = s sum_j g_i p_ij k_j``, ``dk_j = s sum_i g_i p_ij
q_i`` with ``p_ij = exp(s <q_i, k_j> - lse_i)``. No score matrix is ever written to memory:

- forward (``_lse_fwd_kernel``), one program per block of ``BLOCK_M`` rows: for each tile of
  ``BLOCK_N`` columns it forms the score tile (the D contraction in chunks of ``BLOCK_D``, fp32
  accumulators), applies the scale and the excluded diagonals, and folds the tile into a running
  max and sum in base 2 (``exp2``; the online log-sum-exp of FlashAttention). Only ``lse`` (B,)
  float32 is written.
- backward ``dq`` (``_lse_bwd_dq_kernel``), one program per (row block, chunk of ``BLOCK_DO``
  output dimensions): re-forms each score tile, ``w = g p`` (0 where excluded), and accumulates
  ``w @ k`` in fp32; no atomics.
- backward ``dk`` (``_lse_bwd_dk_kernel``), one program per (column block, output chunk): loops
  over row tiles and accumulates ``w^T @ q`` in fp32; no atomics.

Precision: half-precision inputs (float16, bfloat16) go through the tensor cores with fp32
accumulation; the weights ``w`` are rounded to the input dtype before the second product, as
FlashAttention rounds ``P`` before ``P V``. float32 inputs use IEEE fp32 products
(``input_precision="ieee"``), never TF32, so the fp32 results match the torch path to rounding.

Excluded diagonals: up to ``MAX_EXCLUDE`` offsets, passed as runtime ints (a new batch size
recompiles nothing); the dispatcher in :mod:`posneg._kernels` sends more to the torch path.

This module is imported only lazily, by the dispatcher when :func:`posneg._kernels.triton_usable`
holds and by the interpreter tests. It is the one library module that imports ``triton`` at
its top: inside ``try`` so that collecting it (doctests) without triton installed still works;
the kernels are then simply not defined and the launchers raise ``RuntimeError``.
On CPU tensors the kernels run under Triton's interpreter (``TRITON_INTERPRET=1`` set before
this module is imported); ``tests/_kernels/test_lse_triton.py`` does that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from posneg._kernels.reference import check_exclude_offsets, check_pair, check_row_vector

try:
    import triton
    import triton.language as tl
except ImportError:  # triton is optional (the [gpu] extra); the torch path covers everything
    HAVE_TRITON = False
else:
    HAVE_TRITON = True

#: Most excluded diagonals the kernels take (more go to the torch path).
MAX_EXCLUDE = 4

_LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class Blocks:
    """Tile sizes and launch options of one kernel launch.

    ``block_m`` rows and ``block_n`` columns per score tile, ``block_d`` dimensions per step of
    the score contraction, ``block_do`` output dimensions per backward program. Every block is a
    power of two >= 16 (``tl.dot``'s smallest tile).
    """

    block_m: int
    block_n: int
    block_d: int
    block_do: int
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_d", "block_do"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 16 or v & (v - 1):
                raise ValueError(f"Blocks: {name} must be a power of two >= 16; got {v!r}")


def _pow2(n: int, low: int = 16, high: int = 256) -> int:
    """The smallest power of two >= ``n``, clipped to [low, high]."""
    return max(low, min(high, 1 << max(0, int(n) - 1).bit_length()))


def default_blocks(kind: str, dtype: torch.dtype, d: int, device: torch.device) -> Blocks:
    """Tile sizes for ``kind`` ("forward", "backward" or "weights"), the dtype, D and the device.

    On a GPU, half precision takes 128 x 64 forward tiles (8 warps) and 64 x 64 backward tiles
    with up to 256 output dimensions per program; float32 takes smaller tiles (no tensor cores).
    Under the interpreter (CPU tensors) larger tiles mean fewer Python-level programs.
    """
    if device.type != "cuda":
        return Blocks(64, 64, _pow2(d, high=128), _pow2(d, high=128), num_warps=4, num_stages=1)
    half = dtype in (torch.float16, torch.bfloat16)
    if kind == "weights":  # a plain GEMM with an exp epilogue (the chunked backward)
        if half:
            return Blocks(128, 128, 64, 16, num_warps=8, num_stages=3)
        return Blocks(64, 64, 32, 16, num_warps=4, num_stages=2)
    if kind == "forward":
        if half:
            return Blocks(128, 64, 64, 64, num_warps=8, num_stages=3)
        return Blocks(64, 64, 32, 32, num_warps=4, num_stages=2)
    if half:
        return Blocks(64, 64, 64, _pow2(d, high=256), num_warps=8, num_stages=2)
    return Blocks(64, 32, 32, _pow2(d, high=128), num_warps=4, num_stages=2)


if HAVE_TRITON:

    @triton.jit
    def _score_tile(
        q_ptr,
        k_ptr,
        rows,
        cols,
        B,
        M,
        D,
        stride_qb,
        stride_qd,
        stride_kb,
        stride_kd,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
        PREC: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        """(BLOCK_M, BLOCK_N) fp32 tile of <q_rows, k_cols>; zero outside the matrix."""
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        rows64 = rows.to(tl.int64)
        cols64 = cols.to(tl.int64)
        for d0 in range(0, D, BLOCK_D):
            dims = d0 + tl.arange(0, BLOCK_D)
            qt = tl.load(
                q_ptr + rows64[:, None] * stride_qb + dims[None, :] * stride_qd,
                mask=(rows[:, None] < B) & (dims[None, :] < D),
                other=0.0,
            )
            kt = tl.load(
                k_ptr + dims[:, None] * stride_kd + cols64[None, :] * stride_kb,
                mask=(dims[:, None] < D) & (cols[None, :] < M),
                other=0.0,
            )
            if UPCAST:  # the interpreter multiplies bfloat16 bit patterns: go through fp32
                qt = qt.to(tl.float32)
                kt = kt.to(tl.float32)
            acc = tl.dot(qt, kt, acc, input_precision=PREC)
        return acc

    @triton.jit
    def _kept(rows, cols, B, M, EX0, EX1, EX2, EX3, N_EX: tl.constexpr):
        """(BLOCK_M, BLOCK_N) bool: inside the matrix and not on an excluded diagonal."""
        keep = (rows[:, None] < B) & (cols[None, :] < M)
        if N_EX > 0:
            keep = keep & (cols[None, :] != ((rows + EX0) % M)[:, None])
        if N_EX > 1:
            keep = keep & (cols[None, :] != ((rows + EX1) % M)[:, None])
        if N_EX > 2:
            keep = keep & (cols[None, :] != ((rows + EX2) % M)[:, None])
        if N_EX > 3:
            keep = keep & (cols[None, :] != ((rows + EX3) % M)[:, None])
        return keep

    @triton.jit
    def _lse_fwd_kernel(
        q_ptr,
        k_ptr,
        lse_ptr,
        B,
        M,
        D,
        stride_qb,
        stride_qd,
        stride_kb,
        stride_kd,
        scale2,
        EX0,
        EX1,
        EX2,
        EX3,
        N_EX: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
        PREC: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for n0 in range(0, M, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            s = _score_tile(
                q_ptr, k_ptr, rows, cols, B, M, D, stride_qb, stride_qd, stride_kb, stride_kd,
                BLOCK_M, BLOCK_N, BLOCK_D, PREC, UPCAST,
            )  # fmt: skip
            keep = _kept(rows, cols, B, M, EX0, EX1, EX2, EX3, N_EX)
            s = tl.where(keep, s * scale2, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            # a row with nothing kept yet keeps m = -inf; shift by 0 there (no -inf - -inf)
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp2(s - shift[:, None])  # exp2(-inf) = 0 where not kept
            l_i = l_i * tl.exp2(m_i - shift) + tl.sum(p, axis=1)
            m_i = m_new
        # log(l) of an empty row is -inf, and so is its lse
        lse = tl.where(l_i > 0.0, (m_i + tl.log2(tl.maximum(l_i, 1e-38))), float("-inf"))
        tl.store(lse_ptr + rows, lse * 0.6931471805599453, mask=rows < B)

    @triton.jit
    def _weights(s, rows, lse_ptr, g_ptr, keep, B, scale2):
        """w = g_i exp(s_ij - lse_i), 0 where not kept (fp32)."""
        lse = tl.load(lse_ptr + rows, mask=rows < B, other=0.0)
        g = tl.load(g_ptr + rows, mask=rows < B, other=0.0)
        lse2 = tl.where(lse == float("-inf"), 0.0, lse * 1.4426950408889634)
        p = tl.where(keep, tl.exp2(s * scale2 - lse2[:, None]), 0.0)
        return p * g[:, None]

    @triton.jit
    def _lse_bwd_dq_kernel(
        q_ptr,
        k_ptr,
        lse_ptr,
        g_ptr,
        dq_ptr,
        B,
        M,
        D,
        stride_qb,
        stride_qd,
        stride_kb,
        stride_kd,
        scale,
        EX0,
        EX1,
        EX2,
        EX3,
        N_EX: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_DO: tl.constexpr,
        PREC: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        outd = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
        scale2 = scale * 1.4426950408889634
        acc = tl.zeros((BLOCK_M, BLOCK_DO), dtype=tl.float32)
        for n0 in range(0, M, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            s = _score_tile(
                q_ptr, k_ptr, rows, cols, B, M, D, stride_qb, stride_qd, stride_kb, stride_kd,
                BLOCK_M, BLOCK_N, BLOCK_D, PREC, UPCAST,
            )  # fmt: skip
            keep = _kept(rows, cols, B, M, EX0, EX1, EX2, EX3, N_EX)
            w = _weights(s, rows, lse_ptr, g_ptr, keep, B, scale2)
            kt = tl.load(
                k_ptr + cols.to(tl.int64)[:, None] * stride_kb + outd[None, :] * stride_kd,
                mask=(cols[:, None] < M) & (outd[None, :] < D),
                other=0.0,
            )
            wl = w.to(kt.dtype)  # rounded to the input dtype, as FlashAttention rounds P
            if UPCAST:
                wl = wl.to(tl.float32)
                kt = kt.to(tl.float32)
            acc = tl.dot(wl, kt, acc, input_precision=PREC)
        out = acc * scale
        tl.store(
            dq_ptr + rows.to(tl.int64)[:, None] * D + outd[None, :],
            out.to(dq_ptr.dtype.element_ty),
            mask=(rows[:, None] < B) & (outd[None, :] < D),
        )

    @triton.jit
    def _lse_bwd_dk_kernel(
        q_ptr,
        k_ptr,
        lse_ptr,
        g_ptr,
        dk_ptr,
        B,
        M,
        D,
        stride_qb,
        stride_qd,
        stride_kb,
        stride_kd,
        scale,
        EX0,
        EX1,
        EX2,
        EX3,
        N_EX: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_DO: tl.constexpr,
        PREC: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        outd = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
        scale2 = scale * 1.4426950408889634
        acc = tl.zeros((BLOCK_N, BLOCK_DO), dtype=tl.float32)
        for m0 in range(0, B, BLOCK_M):
            rows = m0 + tl.arange(0, BLOCK_M)
            s = _score_tile(
                q_ptr, k_ptr, rows, cols, B, M, D, stride_qb, stride_qd, stride_kb, stride_kd,
                BLOCK_M, BLOCK_N, BLOCK_D, PREC, UPCAST,
            )  # fmt: skip
            keep = _kept(rows, cols, B, M, EX0, EX1, EX2, EX3, N_EX)
            w = _weights(s, rows, lse_ptr, g_ptr, keep, B, scale2)
            qt = tl.load(
                q_ptr + rows.to(tl.int64)[:, None] * stride_qb + outd[None, :] * stride_qd,
                mask=(rows[:, None] < B) & (outd[None, :] < D),
                other=0.0,
            )
            wl = w.to(qt.dtype)
            if UPCAST:
                wl = wl.to(tl.float32)
                qt = qt.to(tl.float32)
            acc = tl.dot(tl.trans(wl), qt, acc, input_precision=PREC)
        out = acc * scale
        tl.store(
            dk_ptr + cols.to(tl.int64)[:, None] * D + outd[None, :],
            out.to(dk_ptr.dtype.element_ty),
            mask=(cols[:, None] < M) & (outd[None, :] < D),
        )

    @triton.jit
    def _lse_bwd_weights_kernel(
        q_ptr,
        k_ptr,
        lse_ptr,
        g_ptr,
        w_ptr,
        row0,
        row1,
        M,
        D,
        stride_qb,
        stride_qd,
        stride_kb,
        stride_kd,
        scale2,
        EX0,
        EX1,
        EX2,
        EX3,
        N_EX: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
        PREC: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        """W[r - row0, j] = g_r p_rj for rows row0 <= r < row1, in W's dtype (chunked path)."""
        rows = row0 + tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        s = _score_tile(
            q_ptr, k_ptr, rows, cols, row1, M, D, stride_qb, stride_qd, stride_kb, stride_kd,
            BLOCK_M, BLOCK_N, BLOCK_D, PREC, UPCAST,
        )  # fmt: skip
        keep = _kept(rows, cols, row1, M, EX0, EX1, EX2, EX3, N_EX)
        w = _weights(s, rows, lse_ptr, g_ptr, keep, row1, scale2)
        tl.store(
            w_ptr + (rows - row0).to(tl.int64)[:, None] * M + cols[None, :],
            w.to(w_ptr.dtype.element_ty),
            mask=(rows[:, None] < row1) & (cols[None, :] < M),
        )


def _require_triton(fn: str) -> None:
    if not HAVE_TRITON:
        raise RuntimeError(f"{fn}: triton is not installed (pip install 'posneg[gpu]')")


def _prepare(
    fn: str, q: torch.Tensor, k: torch.Tensor, scale: float, exclude_offsets: tuple[int, ...]
) -> tuple[float, tuple[int, ...]]:
    _require_triton(fn)
    s = check_pair(fn, q, k, scale)
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"{fn}: q must be float16, bfloat16 or float32; got {q.dtype}")
    offsets = check_exclude_offsets(fn, exclude_offsets, int(k.shape[0]))
    if len(offsets) > MAX_EXCLUDE:
        raise ValueError(
            f"{fn}: exclude_offsets takes at most {MAX_EXCLUDE} distinct offsets mod M; "
            f"got {len(offsets)}"
        )
    return s, offsets


def _launch_args(
    q: torch.Tensor, k: torch.Tensor, offsets: tuple[int, ...]
) -> tuple[list[int], dict[str, object]]:
    ex = [*offsets, *([0] * (MAX_EXCLUDE - len(offsets)))]
    sizes = [int(q.shape[0]), int(k.shape[0]), int(q.shape[1])]
    strides = [q.stride(0), q.stride(1), k.stride(0), k.stride(1)]
    prec = "ieee" if q.dtype == torch.float32 else "tf32"
    # Triton's interpreter (CPU tensors) cannot multiply bfloat16 (it stores them as uint16):
    # there the tiles are cast to fp32 first, which a bf16 x bf16 -> fp32 product equals
    upcast = q.device.type != "cuda" and q.dtype == torch.bfloat16
    return [*sizes, *strides], {"EX": ex, "N_EX": len(offsets), "PREC": prec, "UPCAST": upcast}


def row_lse_forward_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    scale: float,
    exclude_offsets: tuple[int, ...] = (),
    blocks: Blocks | None = None,
) -> torch.Tensor:
    """Launch the fused forward: (B,) float32 ``lse`` (see :mod:`posneg._kernels.reference`).

    Args:
        q: (B, D) anchors, float16/bfloat16/float32, on a CUDA device (or on the CPU under
            ``TRITON_INTERPRET=1``).
        k: (M, D) candidates, same dtype and device.
        scale: multiplies every score.
        exclude_offsets: at most ``MAX_EXCLUDE`` excluded diagonals.
        blocks: tile sizes (``None``: :func:`default_blocks`).

    Returns:
        (B,) float32 ``lse``.

    Raises:
        RuntimeError: triton is not installed.
        TypeError, ValueError: as the reference, and float64 inputs or too many offsets.
    """
    fn = "row_lse_forward_triton"
    s, offsets = _prepare(fn, q, k, scale, exclude_offsets)
    cfg = blocks or default_blocks("forward", q.dtype, int(q.shape[1]), q.device)
    args, extra = _launch_args(q, k, offsets)
    lse = torch.empty(q.shape[0], dtype=torch.float32, device=q.device)
    grid = (math.ceil(q.shape[0] / cfg.block_m),)
    _lse_fwd_kernel[grid](
        q, k, lse, *args, s * _LOG2E, *extra["EX"],  # type: ignore[misc]
        N_EX=extra["N_EX"], BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
        PREC=extra["PREC"], UPCAST=extra["UPCAST"], num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )  # fmt: skip
    return lse


#: Largest D the fused backward takes by default: one output chunk of at most 256 dimensions per
#: program, so each score tile is formed once per kernel. Above it, a fused program would
#: re-form every score tile once per output chunk (3x at D = 768), and the chunked path is used.
FUSED_MAX_D = 256

#: Bytes of one weight block of the chunked backward (rows x M in the input dtype).
CHUNK_BYTES = 256 * 2**20


def _mm32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` with a float32 result (half inputs through the tensor cores on CUDA)."""
    if a.dtype == torch.float32:
        return a @ b
    if a.is_cuda:
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (RuntimeError, TypeError):  # an older torch without out_dtype
            pass
    return a.float() @ b.float()


def row_lse_backward_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    grad_lse: torch.Tensor,
    *,
    scale: float,
    exclude_offsets: tuple[int, ...] = (),
    blocks: Blocks | None = None,
    method: str = "auto",
    chunk_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the backward: ``(dq, dk)`` in ``q``'s and ``k``'s dtype.

    Two methods, same numbers up to rounding:

    - ``"fused"``: the ``dq`` and ``dk`` kernels, no memory beyond the outputs; each program
      owns ``block_do`` output dimensions and re-forms the score tiles it needs.
    - ``"chunked"``: for each block of ``chunk_rows`` rows, a kernel writes the weights
      ``W = g p`` (rows x M, input dtype: the same rounding as the fused path applies before
      its second product), then two GEMMs give ``dq[rows] = s W k`` and ``dk += s W^T q[rows]``
      (float32 accumulation). Four GEMM-equivalents in all with the forward, at the cost of one
      ``CHUNK_BYTES`` block.
    - ``"auto"``: fused when ``D <= FUSED_MAX_D``, else chunked.

    Args:
        q: (B, D) anchors, as given to :func:`row_lse_forward_triton`.
        k: (M, D) candidates.
        lse: (B,) the forward's output (any float dtype; read as float32).
        grad_lse: (B,) upstream gradient.
        scale: the forward's scale.
        exclude_offsets: the forward's excluded diagonals.
        blocks: tile sizes (``None``: :func:`default_blocks`).
        method: "auto" | "fused" | "chunked".
        chunk_rows: rows per block of the chunked method (``None``: ``CHUNK_BYTES`` worth).

    Returns:
        ``(dq, dk)``, (B, D) and (M, D), accumulated in float32.

    Raises:
        RuntimeError: triton is not installed.
        TypeError, ValueError: as the reference, and float64 inputs, too many offsets, a bad
            method or chunk_rows.
    """
    fn = "row_lse_backward_triton"
    s, offsets = _prepare(fn, q, k, scale, exclude_offsets)
    check_row_vector(fn, "lse", lse, q)
    check_row_vector(fn, "grad_lse", grad_lse, q)
    if method not in ("auto", "fused", "chunked"):
        raise ValueError(f"{fn}: method must be 'auto', 'fused' or 'chunked'; got {method!r}")
    b, m, d = int(q.shape[0]), int(k.shape[0]), int(q.shape[1])
    if method == "auto":
        method = "fused" if d <= FUSED_MAX_D else "chunked"
    args, extra = _launch_args(q, k, offsets)
    lse32 = lse.detach().to(torch.float32).contiguous()
    g32 = grad_lse.detach().to(torch.float32).contiguous()
    if method == "chunked":
        cfg = blocks or default_blocks("weights", q.dtype, d, q.device)
        rows = chunk_rows or max(cfg.block_m, CHUNK_BYTES // (m * q.element_size()))
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValueError(f"{fn}: chunk_rows must be a positive int or None; got {rows!r}")
        return _backward_chunked(q, k, lse32, g32, s, extra, cfg, rows)
    cfg = blocks or default_blocks("backward", q.dtype, d, q.device)
    dq = torch.empty((b, d), dtype=q.dtype, device=q.device)
    dk = torch.empty((m, d), dtype=k.dtype, device=q.device)
    n_out = math.ceil(d / cfg.block_do)
    for kernel, out, n_blocks in (
        (_lse_bwd_dq_kernel, dq, math.ceil(b / cfg.block_m)),
        (_lse_bwd_dk_kernel, dk, math.ceil(m / cfg.block_n)),
    ):
        kernel[(n_blocks, n_out)](
            q, k, lse32, g32, out, *args, s, *extra["EX"],  # type: ignore[misc]
            N_EX=extra["N_EX"], BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
            BLOCK_DO=cfg.block_do, PREC=extra["PREC"], UPCAST=extra["UPCAST"],
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )  # fmt: skip
    return dq, dk


def _backward_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    lse32: torch.Tensor,
    g32: torch.Tensor,
    s: float,
    extra: dict[str, object],
    cfg: Blocks,
    rows: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked backward (see :func:`row_lse_backward_triton`)."""
    b, m, d = int(q.shape[0]), int(k.shape[0]), int(q.shape[1])
    dq = torch.empty((b, d), dtype=q.dtype, device=q.device)
    dk32 = torch.zeros((m, d), dtype=torch.float32, device=q.device)
    strides = [q.stride(0), q.stride(1), k.stride(0), k.stride(1)]
    for r0 in range(0, b, rows):
        r1 = min(b, r0 + rows)
        w = torch.empty((r1 - r0, m), dtype=q.dtype, device=q.device)
        grid = (math.ceil((r1 - r0) / cfg.block_m), math.ceil(m / cfg.block_n))
        _lse_bwd_weights_kernel[grid](
            q, k, lse32, g32, w, r0, r1, m, d, *strides, s * _LOG2E,
            *extra["EX"],  # type: ignore[misc]
            N_EX=extra["N_EX"], BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
            PREC=extra["PREC"], UPCAST=extra["UPCAST"], num_warps=cfg.num_warps,
            num_stages=cfg.num_stages,
        )  # fmt: skip
        dq[r0:r1] = (_mm32(w, k) * s).to(q.dtype)
        dk32 += _mm32(w.T, q[r0:r1])
    return dq, (dk32 * s).to(k.dtype)
