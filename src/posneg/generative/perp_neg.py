"""Perp-Neg: negative-prompt guidance with only the part of the negative orthogonal to the prompt.

Armandpour, Sadeghian, Zheng, Sadeghian, Zhou, "Re-imagine the Negative Prompt Algorithm:
Transform 2D Diffusion into 3D, alleviate Janus problem and Beyond", arXiv 2304.04968 (2023).

With ``eps_u`` the unconditional noise prediction, ``Δ_main = eps_pos − eps_u`` and
``Δ_j = eps_neg_j − eps_u``::

    perp(a, b) = a − (<a, b> / ||b||²) · b
    eps = eps_u + s · [Δ_main − Σ_j w_j · perp(Δ_j, Δ_main)]            (Perp-Neg)
    eps = eps_u + s · [Δ_main − Σ_j w_j · Δ_j]                          (composable negative CFG)
    eps = eps_neg + s · (eps_pos − eps_neg)                   (diffusers' negative prompt)

so a negative that overlaps the prompt (a component along ``Δ_main``) does not cancel the prompt.

Two forms, as the official code (``Perp-Neg/Perp-Neg-stablediffusion``, commit 398d15d9)
computes them:

* ``"2d"`` (``perpneg_diffusion/perpneg_stable_diffusion/pipeline_perpneg_stable_diffusion.py``,
  ``get_prependicualr_component`` / ``weighted_prependicualr_aggricator``): the inner product runs
  over the **whole** tensor (the pipeline is batch 1), there is no guard on ``||b||²`` (a zero main
  direction gives NaN), negative weights enter by magnitude and are subtracted, extra positive
  ``i`` (1-based) uses ``pos_weights[i − 1]`` (the main prompt's weight for the first one: an
  off-by-one in the released code; ``pos_weights_from="paper"`` uses ``pos_weights[i]``), and the
  main prompt's weight is never applied.
* ``"3d"`` (``stable-dreamfusion/guidance/perpneg_utils.py``): projection **per sample** with
  ``max(||b||², 1e-6)``, signed weights that are *added* (negatives carry ``w < 0``), and weights
  with ``|w| <= 1e-4`` skipped per sample; :func:`view_weights` is the view-angle schedule of
  ``nerf/utils.py::get_pos_neg_text_embeddings``.

:func:`guidance` is one sampling-loop step with standard CFG, the two negative-prompt CFGs and
Perp-Neg side by side; it runs on any diffusers UNet's outputs (``unet(x, t, ...).sample``).
What the digit stand-in exercises: the guidance arithmetic on a real diffusers ``UNet2DModel``;
what needs the real model: the text prompts and their visual overlap.

Example:
    >>> import torch
    >>> from posneg.generative.perp_neg import guidance
    >>> g = torch.Generator().manual_seed(0)
    >>> eu, ep, en = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(3))
    >>> guidance(eu, ep, en[None], method="perp_neg", guidance_scale=7.5, neg_weights=1.5).shape
    torch.Size([2, 4, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import nn

from posneg._checks import (
    check_choice,
    check_float,
    check_real,
    check_same_shape,
)

__all__ = [
    "CITATION",
    "PerpNegGuidance",
    "PerpNegViewWeights",
    "guidance",
    "perp_neg_2d",
    "perp_neg_3d",
    "perpendicular_component",
    "view_weights",
]

CITATION = """@article{armandpour2023perpneg,
  title   = {Re-imagine the Negative Prompt Algorithm: Transform 2D Diffusion into 3D,
             alleviate Janus problem and Beyond},
  author  = {Armandpour, Mohammadreza and Sadeghian, Ali and Zheng, Huangjie and
             Sadeghian, Amir and Zhou, Mingyuan},
  journal = {arXiv preprint arXiv:2304.04968},
  year    = {2023}
}"""

Method = Literal["cfg", "composable", "negative_prompt", "perp_neg"]
METHODS: tuple[str, ...] = ("cfg", "composable", "negative_prompt", "perp_neg")
VARIANTS: tuple[str, ...] = ("2d", "3d")
#: The 3-D code's guard on ||b||² and its skip threshold on |w|.
NORM_GUARD = 1e-6
WEIGHT_SKIP = 1e-4


def perpendicular_component(
    x: torch.Tensor, y: torch.Tensor, *, per_sample: bool = True, guard: float | None = NORM_GUARD
) -> torch.Tensor:
    """The part of ``x`` orthogonal to ``y``: ``x − (<x, y> / ||y||²) · y``.

    Args:
        x: ``(B, ...)`` floating tensor.
        y: same shape as ``x``.
        per_sample: inner products per sample over all but dim 0 (the 3-D code); False: over
            the whole tensor (the 2-D code, whose tensors hold one image).
        guard: ``||y||²`` is clamped below at this value (the 3-D code's ``1e-6``); None: no
            guard (the 2-D code; a zero ``y`` gives NaN).

    Returns:
        ``(B, ...)``, the dtype of ``x``.

    Raises:
        TypeError, ValueError: non-float tensors, mismatched shapes, negative ``guard``.
    """
    fn = "perpendicular_component"
    check_float(fn, "x", x)
    check_float(fn, "y", y)
    check_same_shape(fn, "y", y, "x", x)
    if guard is not None and check_real(fn, "guard", guard) < 0:
        raise ValueError(f"{fn}: guard must be >= 0 or None; got {guard!r}")
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    xf, yf = x.to(work), y.to(work)
    if per_sample and x.dim() >= 1:
        dims = tuple(range(1, x.dim()))
        shape = (-1,) + (1,) * (x.dim() - 1)
        dot = (xf * yf).sum(dim=dims).reshape(shape) if dims else xf * yf
        sq = (yf * yf).sum(dim=dims).reshape(shape) if dims else yf * yf
    else:
        dot, sq = (xf * yf).sum(), (yf * yf).sum()
    if guard is not None:
        sq = sq.clamp_min(guard)
    return (xf - dot / sq * yf).to(x.dtype)


def _stack(
    fn: str, name: str, value: torch.Tensor | Sequence[torch.Tensor], ref: torch.Tensor
) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, Sequence) and all(isinstance(v, torch.Tensor) for v in value):
        if len(value) == 0:
            return ref.new_zeros((0, *ref.shape))
        t = torch.stack(list(value))
    else:
        raise TypeError(f"{fn}: {name} must be a tensor (K, *shape) or a sequence of tensors")
    check_float(fn, name, t)
    if t.dim() != ref.dim() + 1 or t.shape[1:] != ref.shape:
        raise ValueError(
            f"{fn}: {name} must have shape (K, {', '.join(map(str, ref.shape))}); "
            f"got {tuple(t.shape)}"
        )
    return t


def _weights(
    fn: str, name: str, w: float | Sequence[float] | torch.Tensor, k: int, ref: torch.Tensor
) -> torch.Tensor:
    """Weights as a (K, B) tensor (a scalar or (K,) broadcast over the batch)."""
    if isinstance(w, torch.Tensor):
        t = w.to(device=ref.device, dtype=torch.float64)
    elif isinstance(w, (int, float)) and not isinstance(w, bool):
        t = torch.full((k,), float(w), dtype=torch.float64, device=ref.device)
    elif isinstance(w, Sequence):
        t = torch.tensor(
            [check_real(fn, name, v) for v in w], dtype=torch.float64, device=ref.device
        )
    else:
        raise TypeError(
            f"{fn}: {name} must be a float, a sequence of floats or a tensor; "
            f"got {type(w).__name__}"
        )
    if t.dim() == 0:
        t = t.expand(k)
    if t.dim() == 1:
        t = t[:, None].expand(t.shape[0], ref.shape[0])
    if t.shape != (k, ref.shape[0]):
        raise ValueError(
            f"{fn}: {name} must have K={k} entries (or shape (K, B)); got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"{fn}: {name} must be finite")
    return t


def _expand(w: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return w.to(ref.dtype).reshape(w.shape + (1,) * (ref.dim() - 1))


def perp_neg_2d(
    delta_main: torch.Tensor,
    delta_negs: torch.Tensor | Sequence[torch.Tensor],
    neg_weights: float | Sequence[float] | torch.Tensor,
    *,
    delta_pos: torch.Tensor | Sequence[torch.Tensor] | None = None,
    pos_weights: Sequence[float] | None = None,
    pos_weights_from: Literal["code", "paper"] = "code",
    per_sample: bool = False,
) -> torch.Tensor:
    """The 2-D aggregator: ``Δ_main + Σ_i w⁺·perp(Δ_pos,i, Δ_main) − Σ_j |w⁻_j|·perp(Δ_j, Δ_main)``.

    Args:
        delta_main: ``(B, ...)`` main direction ``eps_pos − eps_u``.
        delta_negs: ``(K, B, ...)`` negative directions.
        neg_weights: K weights (a scalar is broadcast); their magnitudes are used, as the code.
        delta_pos: ``(P, B, ...)`` extra positive directions, or None.
        pos_weights: weights of all positive prompts, main first (``P + 1``); required with
            ``delta_pos``.
        pos_weights_from: ``"code"``: extra positive ``i`` (1-based) uses ``pos_weights[i−1]``
            (the released code's indexing); ``"paper"``: ``pos_weights[i]``.
        per_sample: False (the code): one inner product over the whole tensor (exact for
            B = 1, the pipeline's case); True: per sample (what the code computes image by image).

    Returns:
        ``(B, ...)`` aggregated direction (multiply by the guidance scale, add ``eps_u``).
    """
    fn = "perp_neg_2d"
    check_float(fn, "delta_main", delta_main)
    negs = _stack(fn, "delta_negs", delta_negs, delta_main)
    w_neg = _weights(fn, "neg_weights", neg_weights, negs.shape[0], delta_main).abs()
    check_choice(fn, "pos_weights_from", pos_weights_from, ("code", "paper"))
    out = torch.zeros_like(delta_main)
    if delta_pos is not None:
        pos = _stack(fn, "delta_pos", delta_pos, delta_main)
        if pos_weights is None or len(pos_weights) != pos.shape[0] + 1:
            raise ValueError(
                f"{fn}: pos_weights must hold P + 1 = {pos.shape[0] + 1} weights (main first) "
                f"with delta_pos; got {pos_weights!r}"
            )
        wp = [check_real(fn, "pos_weights", v) for v in pos_weights]
        shift = 0 if pos_weights_from == "code" else 1
        for i in range(pos.shape[0]):
            out = out + wp[i + shift] * perpendicular_component(
                pos[i], delta_main, per_sample=per_sample, guard=None
            )
    for j in range(negs.shape[0]):
        perp = perpendicular_component(negs[j], delta_main, per_sample=per_sample, guard=None)
        out = out - _expand(w_neg[j], delta_main) * perp
    return out + delta_main


def perp_neg_3d(
    delta_main: torch.Tensor,
    delta_others: torch.Tensor | Sequence[torch.Tensor],
    weights: float | Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """The 3-D (SDS) aggregator: ``Δ_main + Σ_k w_k·perp_b(Δ_k, Δ_main)`` with signed weights.

    Per-sample projection with ``max(||Δ_main||², 1e-6)``; weights with ``|w| <= 1e-4`` are
    skipped per sample (negatives carry ``w < 0``, as :func:`view_weights` returns them). The main
    weight is 1 by construction (the code asserts it).

    Args:
        delta_main: ``(B, ...)``.
        delta_others: ``(K, B, ...)`` the other prompts' directions.
        weights: ``(K,)`` or ``(K, B)`` signed weights (a scalar is broadcast).

    Returns:
        ``(B, ...)``.
    """
    fn = "perp_neg_3d"
    check_float(fn, "delta_main", delta_main)
    others = _stack(fn, "delta_others", delta_others, delta_main)
    w = _weights(fn, "weights", weights, others.shape[0], delta_main)
    out = torch.zeros_like(delta_main)
    for k in range(others.shape[0]):
        keep = (w[k].abs() > WEIGHT_SKIP).to(delta_main.dtype)
        perp = perpendicular_component(others[k], delta_main, per_sample=True, guard=NORM_GUARD)
        out = out + _expand(w[k], delta_main) * _expand(keep, delta_main) * perp
    return out + delta_main


def guidance(
    eps_uncond: torch.Tensor,
    eps_pos: torch.Tensor,
    eps_negs: torch.Tensor | Sequence[torch.Tensor] | None = None,
    *,
    method: Method = "perp_neg",
    guidance_scale: float = 7.5,
    neg_weights: float | Sequence[float] | torch.Tensor = 1.0,
    variant: Literal["2d", "3d"] = "2d",
) -> torch.Tensor:
    """One guided noise prediction: CFG, negative-prompt CFG or Perp-Neg, on any denoiser's outputs.

    * ``"cfg"``: ``eps_u + s·(eps_pos − eps_u)`` (negatives ignored).
    * ``"composable"``: ``eps_u + s·(Δ_main − Σ_j w_j·Δ_j)`` (the repo's ``cebm`` baseline).
    * ``"negative_prompt"``: ``eps_n + s·(eps_pos − eps_n)`` with ``eps_n`` the first negative
      (diffusers' ``negative_prompt``; one negative, no weight).
    * ``"perp_neg"``: ``eps_u + s·perp_neg_2d(...)`` (``variant="2d"``, per image, magnitudes of
      ``neg_weights`` subtracted) or ``eps_u + s·perp_neg_3d(Δ_main, Δ, −|w|)`` (``"3d"``).

    Args:
        eps_uncond: ``(B, ...)`` unconditional prediction.
        eps_pos: ``(B, ...)`` prediction for the prompt.
        eps_negs: ``(K, B, ...)`` predictions for the negatives (required except for ``"cfg"``).
        method: see above.
        guidance_scale: ``s`` (the 2-D pipeline's default 7.5; 3-D uses 100).
        neg_weights: K magnitudes ``w_j`` (scalar broadcast; ``(K, B)`` per sample).
        variant: ``"2d"`` or ``"3d"`` projection rule for ``"perp_neg"``.

    Returns:
        ``(B, ...)`` guided prediction, dtype of ``eps_uncond``.

    Raises:
        TypeError, ValueError: bad tensors, shapes or choices.
    """
    fn = "guidance"
    check_choice(fn, "method", method, METHODS)
    check_choice(fn, "variant", variant, VARIANTS)
    check_float(fn, "eps_uncond", eps_uncond)
    check_float(fn, "eps_pos", eps_pos)
    check_same_shape(fn, "eps_pos", eps_pos, "eps_uncond", eps_uncond)
    s = check_real(fn, "guidance_scale", guidance_scale)
    delta_main = eps_pos - eps_uncond
    if method == "cfg":
        return eps_uncond + s * delta_main
    if eps_negs is None:
        raise ValueError(f"{fn}: eps_negs is required for method={method!r}")
    negs = _stack(fn, "eps_negs", eps_negs, eps_uncond)
    if negs.shape[0] == 0:
        raise ValueError(f"{fn}: eps_negs must hold at least one negative for method={method!r}")
    if method == "negative_prompt":
        return negs[0] + s * (eps_pos - negs[0])
    deltas = negs - eps_uncond
    w = _weights(fn, "neg_weights", neg_weights, negs.shape[0], eps_uncond)
    if method == "composable":
        agg = delta_main - (_expand(w, eps_uncond) * deltas).sum(dim=0)
    elif variant == "2d":
        agg = perp_neg_2d(delta_main, deltas, w.abs(), per_sample=True)
    else:
        agg = perp_neg_3d(delta_main, deltas, -w.abs())
    return eps_uncond + s * agg


class PerpNegViewWeights(NamedTuple):
    """The view schedule at one azimuth: positive ``r·e_start + (1−r)·e_end``, two negatives."""

    r: float
    start: str
    end: str
    neg_views: tuple[str, str]
    neg_weights: tuple[float, float]


def view_weights(
    azimuth: float, *, negative_w: float = -2.0, front_decay: float = 2.0, side_decay: float = 10.0
) -> PerpNegViewWeights:
    """The 3-D view-dependent prompt weights (``get_pos_neg_text_embeddings``), azimuth in degrees.

    * ``a ∈ [−90, 90)``: ``r = 1 − |a|/90``; positive ``r·front + (1−r)·side``; negatives
      ``front: 0 if r > 0.8 else exp(−r·front_decay)·negative_w`` and
      ``side: 0 if r < 0.2 else exp(−(1−r)·side_decay)·negative_w``.
    * otherwise: ``r = 1 − (|a| − 90)/90``; positive ``r·side + (1−r)·back``; negatives
      ``side: 0 if r > 0.8 else exp(−r·side_decay)·negative_w/2`` and ``front: negative_w``.

    Returns:
        :class:`PerpNegViewWeights` (signed weights, as :func:`perp_neg_3d` takes them).
    """
    fn = "view_weights"
    a = check_real(fn, "azimuth", azimuth)
    nw = check_real(fn, "negative_w", negative_w)
    fd = check_real(fn, "front_decay", front_decay)
    sd = check_real(fn, "side_decay", side_decay)
    if -90 <= a < 90:
        r = 1 - abs(a) / 90
        front = 0.0 if r > 0.8 else math.exp(-r * fd) * nw
        side = 0.0 if r < 0.2 else math.exp(-(1 - r) * sd) * nw
        return PerpNegViewWeights(r, "front", "side", ("front", "side"), (front, side))
    r = 1 - (abs(a) - 90) / 90
    side = 0.0 if r > 0.8 else math.exp(-r * sd) * nw / 2
    return PerpNegViewWeights(r, "side", "back", ("side", "front"), (side, nw))


class PerpNegGuidance(nn.Module):
    """Module form of :func:`guidance` (stores ``method``, scale, weights, variant).

    Example:
        >>> import torch
        >>> step = PerpNegGuidance(guidance_scale=5.0, neg_weights=1.5)
        >>> e = torch.zeros(1, 1, 4, 4)
        >>> step(e, e + 1, (e - 1)[None]).shape
        torch.Size([1, 1, 4, 4])
    """

    def __init__(
        self,
        *,
        method: Method = "perp_neg",
        guidance_scale: float = 7.5,
        neg_weights: float | Sequence[float] = 1.0,
        variant: Literal["2d", "3d"] = "2d",
    ) -> None:
        super().__init__()
        fn = "PerpNegGuidance"
        self.method: Method = check_choice(fn, "method", method, METHODS)  # type: ignore[assignment]
        self.variant: Literal["2d", "3d"] = check_choice(fn, "variant", variant, VARIANTS)  # type: ignore[assignment]
        self.guidance_scale = check_real(fn, "guidance_scale", guidance_scale)
        if isinstance(neg_weights, Sequence):
            self.neg_weights: float | tuple[float, ...] = tuple(
                check_real(fn, "neg_weights", w) for w in neg_weights
            )
        else:
            self.neg_weights = check_real(fn, "neg_weights", neg_weights)

    def forward(
        self,
        eps_uncond: torch.Tensor,
        eps_pos: torch.Tensor,
        eps_negs: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return guidance(
            eps_uncond,
            eps_pos,
            eps_negs,
            method=self.method,
            guidance_scale=self.guidance_scale,
            neg_weights=self.neg_weights,
            variant=self.variant,
        )

    def extra_repr(self) -> str:
        return (
            f"method={self.method!r}, guidance_scale={self.guidance_scale}, "
            f"neg_weights={self.neg_weights}, variant={self.variant!r}"
        )
