"""NegToMe: negative token merging, pushing each image's tokens away from a reference image's.

Singh, Li, Shi, Krishna, Choi, Koh, Cohen, Gould, Zheng, Zettlemoyer, "Negative Token Merging:
Image-based Adversarial Feature Guidance", arXiv 2412.01339 (2024).

Inside self-attention, after the attention output (projection, residual, rescale), for the
tokens ``x_f ∈ R^{N×D}`` of frame ``f`` of a batch whose frame 0 is the reference, with
``cos[f, i, j] = <x̂_f[i], x̂_0[j]>``:

* ``match_axis="code"`` (the official ``negtome()``, ``1jsingh/negtome``,
  ``src/negtome/pipeline_negtome_sdxl.py``, commit bdcbb83c): ``s[f, j] = max_i cos[f, i, j]``,
  ``i* = argmax_i``; output token ``j`` becomes ``(1+α)·x_f[j] − α·x_0[i*(f, j)]`` where
  ``s[f, j] > threshold``;
* ``match_axis="paper"`` (the paper's per-token matching): ``j*(i) = argmax_j cos[f, i, j]``;
  token ``i`` becomes ``(1+α)·x_f[i] − α·x_0[j*(i)]`` where ``max_j cos > threshold``.

The two differ on general inputs (a test shows it); both leave frame 0 unchanged (its diagonal
cosine is 1 and ``(1+α)x − αx = x``). No renormalisation: token norms can grow. ``mask`` (the
code's copyright mode) sets ``cos[..., j] = −inf`` for reference positions ``j`` outside the
asset region: in ``"paper"`` mode such reference tokens are never subtracted; in ``"code"`` mode
(since ``j`` is the output axis there) they are the output tokens that are never merged.
``dropout`` skips each token's merge with that probability (drawn from ``generator``).

The schedule: merging only at scheduler timesteps ``t_end <= t <= t_start`` (SDXL: 800..1000,
about the first 20% of the steps), only in self-attention layers whose processor name starts
with one of ``blocks`` (SDXL: ``up_blocks``) and whose token map has ``H, W >= min_attn_dim``
(SDXL: 32), separately on each classifier-free-guidance chunk of the batch.
:class:`NegToMeAttnProcessor` does this as a diffusers attention processor (diffusers imported
lazily); :func:`negtome` is the pure tensor step and needs only torch.

What the digit stand-in exercises: the processor on a diffusers ``UNet2DModel`` with
self-attention at 4x4 tokens; what needs the real model: the diversity of SDXL/Flux images.

Example:
    >>> import torch
    >>> from posneg.generative.negtome import negtome
    >>> x = torch.randn(3, 16, 8, generator=torch.Generator().manual_seed(0))
    >>> y = negtome(x, alpha=0.9, threshold=0.7)
    >>> bool(torch.allclose(y[0], x[0], atol=1e-6))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from posneg._checks import (
    check_choice,
    check_float,
    check_generator,
    check_int,
    check_range,
    check_real,
)

__all__ = [
    "CITATION",
    "NegToMe",
    "NegToMeAttnProcessor",
    "apply_negtome",
    "negtome",
    "negtome_active",
    "set_negtome_timestep",
]

CITATION = """@article{singh2024negtome,
  title   = {Negative Token Merging: Image-based Adversarial Feature Guidance},
  author  = {Singh, Jaskirat and Li, Lindsey and Shi, Weijia and Krishna, Ranjay and
             Choi, Yejin and Koh, Pang Wei and Cohen, Michael F. and Gould, Stephen and
             Zheng, Liang and Zettlemoyer, Luke},
  journal = {arXiv preprint arXiv:2412.01339},
  year    = {2024}
}"""

MATCH_AXES: tuple[str, ...] = ("code", "paper")


def negtome(
    hidden_states: torch.Tensor,
    *,
    alpha: float = 0.9,
    threshold: float = 0.7,
    dropout: float = 0.0,
    mask: torch.Tensor | None = None,
    match_axis: Literal["code", "paper"] = "code",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Merge each frame's tokens away from their matches in frame 0 (see the module docstring).

    Args:
        hidden_states: ``(F, N, D)`` tokens; frame 0 is the reference.
        alpha: merging strength α (0 gives the identity).
        threshold: cosine threshold (``> 1`` gives the identity).
        dropout: probability of skipping each token's merge, in ``[0, 1]``.
        mask: ``(N,)`` bool, True inside the reference asset region, or None.
        match_axis: ``"code"`` (the official code) or ``"paper"``.
        generator: draws the dropout (only used when ``dropout > 0``).

    Returns:
        ``(F, N, D)``, dtype of the input (similarities computed in float32 for half inputs).

    Raises:
        TypeError, ValueError: bad tensors or hyperparameters.
    """
    fn = "negtome"
    check_float(fn, "hidden_states", hidden_states)
    if hidden_states.dim() != 3:
        raise ValueError(
            f"{fn}: hidden_states must have shape (F, N, D); got {tuple(hidden_states.shape)}"
        )
    a = check_real(fn, "alpha", alpha)
    thr = check_real(fn, "threshold", threshold)
    p = check_range(fn, "dropout", dropout, 0.0, 1.0)
    check_choice(fn, "match_axis", match_axis, MATCH_AXES)
    check_generator(fn, generator)
    frames, n, _ = hidden_states.shape
    x = hidden_states
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    xn = F.normalize(x.to(work), dim=-1)
    cos = xn @ xn[0:1].transpose(1, 2)  # (F, N_i, N_j): frame-f token i vs reference token j
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.shape != (n,):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"{fn}: mask must be a ({n},) bool tensor; got {got}")
        cos = cos.masked_fill(
            ~mask.to(device=x.device, dtype=torch.bool)[None, None, :], float("-inf")
        )
    if match_axis == "code":
        best, idx = cos.max(dim=-2)  # over frame-f tokens i, for each output position j
    else:
        best, idx = cos.max(dim=-1)  # over reference tokens j, for each token i
    merge = best > thr
    if p > 0:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(frames, n, generator=generator, device=gen_device).to(x.device)
        merge = merge & (u > p)
    ref = x[0][idx]  # (F, N, D): x_0[idx[f, k]]
    merged = (1 + a) * x - a * ref
    return torch.where(merge[..., None], merged, x)


def negtome_active(
    timestep: float | torch.Tensor, *, t_start: float = 1000, t_end: float = 800
) -> bool:
    """Whether NegToMe merges at timestep ``t``: ``t_end <= t <= t_start`` (0-1000 scale)."""
    t = float(timestep.item()) if isinstance(timestep, torch.Tensor) else float(timestep)
    return t_end <= t <= t_start


class NegToMe(nn.Module):
    """Module form of :func:`negtome` (stores α, threshold, dropout and the matching axis).

    Example:
        >>> import torch
        >>> m = NegToMe(alpha=0.5, threshold=0.2)
        >>> m(torch.ones(2, 4, 3)).shape
        torch.Size([2, 4, 3])
    """

    def __init__(
        self,
        *,
        alpha: float = 0.9,
        threshold: float = 0.7,
        dropout: float = 0.0,
        match_axis: Literal["code", "paper"] = "code",
    ) -> None:
        super().__init__()
        fn = "NegToMe"
        self.alpha = check_real(fn, "alpha", alpha)
        self.threshold = check_real(fn, "threshold", threshold)
        self.dropout = check_range(fn, "dropout", dropout, 0.0, 1.0)
        self.match_axis: Literal["code", "paper"] = check_choice(  # type: ignore[assignment]
            fn, "match_axis", match_axis, MATCH_AXES
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return negtome(
            hidden_states,
            alpha=self.alpha,
            threshold=self.threshold,
            dropout=self.dropout,
            mask=mask,
            match_axis=self.match_axis,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, threshold={self.threshold}, dropout={self.dropout}, "
            f"match_axis={self.match_axis!r}"
        )


class NegToMeAttnProcessor:
    """A diffusers attention processor: standard attention, then :func:`negtome` on its output.

    Set ``processor.timestep`` before each UNet call (or use :func:`set_negtome_timestep`);
    ``None`` disables merging. Merging runs only for self-attention (no encoder states), when the
    processor's ``name`` starts with one of ``blocks``, when the token map (a 4-D input's
    ``H, W``; a 3-D input's ``N`` taken as a square) has ``H, W >= min_attn_dim``, and for
    ``t_end <= timestep <= t_start``; the batch is split into ``cfg_chunks`` equal chunks (2: the
    CFG halves; 1: one group) and each is merged with its own frame 0.

    Args:
        name: the processor's name in ``unet.attn_processors`` (``up_blocks.0.attentions.0...``).
        merger: the :class:`NegToMe` settings.
        t_start, t_end: the timestep window (SDXL: 1000, 800).
        blocks: name prefixes of the blocks that merge (SDXL: ``("up_blocks",)``).
        min_attn_dim: smallest ``H, W`` that merges (SDXL: 32).
        cfg_chunks: number of equal batch chunks merged separately.
        mask: ``(H·W,)`` bool asset mask at this layer's resolution, or None.
        generator: draws the dropout.
    """

    def __init__(
        self,
        name: str,
        merger: NegToMe,
        *,
        t_start: float = 1000,
        t_end: float = 800,
        blocks: Sequence[str] = ("up_blocks",),
        min_attn_dim: int = 32,
        cfg_chunks: int = 2,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        fn = "NegToMeAttnProcessor"
        if not isinstance(merger, NegToMe):
            raise TypeError(f"{fn}: merger must be a NegToMe; got {type(merger).__name__}")
        self.name = str(name)
        self.merger = merger
        self.t_start = check_real(fn, "t_start", t_start)
        self.t_end = check_real(fn, "t_end", t_end)
        self.blocks = tuple(str(b) for b in blocks)
        self.min_attn_dim = check_int(fn, "min_attn_dim", min_attn_dim, min_value=0)
        self.cfg_chunks = check_int(fn, "cfg_chunks", cfg_chunks, min_value=1)
        self.mask = mask
        self.generator = generator
        self.timestep: float | None = None
        from diffusers.models.attention_processor import AttnProcessor2_0

        self._inner = AttnProcessor2_0()

    def _applies(self, h: int, w: int, cross: bool) -> bool:
        if cross or self.timestep is None:
            return False
        if not any(self.name.startswith(b) for b in self.blocks):
            return False
        if h < self.min_attn_dim or w < self.min_attn_dim:
            return False
        return negtome_active(self.timestep, t_start=self.t_start, t_end=self.t_end)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        out: torch.Tensor = self._inner(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
        )
        if out.dim() == 4:
            b, c, h, w = out.shape
            tokens = out.reshape(b, c, h * w).transpose(1, 2)
        else:
            b, n, c = out.shape
            h = w = math.isqrt(n) if math.isqrt(n) ** 2 == n else 0
            tokens = out
        if not self._applies(h, w, encoder_hidden_states is not None) or b % self.cfg_chunks:
            return out
        chunks = tokens.chunk(self.cfg_chunks, dim=0)
        merged = torch.cat(
            [self.merger(ch, mask=self.mask, generator=self.generator) for ch in chunks], dim=0
        )
        if out.dim() == 4:
            return merged.transpose(1, 2).reshape(b, c, h, w)
        return merged


def apply_negtome(
    model: Any,
    merger: NegToMe,
    *,
    t_start: float = 1000,
    t_end: float = 800,
    blocks: Sequence[str] = ("up_blocks",),
    min_attn_dim: int = 32,
    cfg_chunks: int = 2,
    generator: torch.Generator | None = None,
) -> list[NegToMeAttnProcessor]:
    """Install :class:`NegToMeAttnProcessor` on every attention layer of a diffusers model.

    ``model`` is any ``nn.Module`` holding diffusers ``Attention`` layers (``UNet2DModel``,
    ``UNet2DConditionModel``, ...); each gets a processor named by its module path. Restore with
    ``model.set_default_attn_processor()`` where the model has it.

    Returns:
        The installed processors (set their ``timestep`` with :func:`set_negtome_timestep`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            "apply_negtome: model must be a diffusers model (nn.Module); "
            f"got {type(model).__name__}"
        )
    from diffusers.models.attention_processor import Attention

    procs: dict[str, NegToMeAttnProcessor] = {}
    for name, module in model.named_modules():
        if isinstance(module, Attention):
            procs[name] = NegToMeAttnProcessor(
                name,
                merger,
                t_start=t_start,
                t_end=t_end,
                blocks=blocks,
                min_attn_dim=min_attn_dim,
                cfg_chunks=cfg_chunks,
                generator=generator,
            )
            module.set_processor(procs[name])  # type: ignore[arg-type]
    if not procs:
        raise ValueError(
            f"apply_negtome: model has no diffusers Attention layers ({type(model).__name__})"
        )
    return list(procs.values())


def set_negtome_timestep(
    processors: Sequence[NegToMeAttnProcessor], timestep: float | torch.Tensor | None
) -> None:
    """Tell every processor the current scheduler timestep (None: merging off)."""
    t = (
        None
        if timestep is None
        else float(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)
    )
    for proc in processors:
        proc.timestep = t
