"""DeGLA: Decoupled Global-Local Alignment for compositional image-text fine-tuning.

A CLIP fine-tuning objective with hard negative captions (LLM-written in the paper): the NegCLIP
global term, an image-grounded contrast (IGC) and a text-grounded contrast (TGC) restricted to a
sample's own negatives, and a mean-squared self-distillation to an EMA teacher that keeps the
pretrained (zero-shot) ability. Works on the features any open_clip / transformers CLIP model
returns; the teacher is a frozen copy of the same model updated by :func:`ema_update_`.

Transcribed from xiaoxing2001/DeGLA at commit 1c5e960644d885203005001958fee82771bd800f:
``src/open_clip/loss.py`` (``CLIPloss_DeGLA.forward``, ``get_image_local_loss``,
``get_text_local_loss``, ``get_mse_distill_loss``) and ``src/training/train.py``
(``update_teacher_ema``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, cast

import torch
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, map_rows

__all__ = ["DeGLALoss", "DeGLAOutput", "degla_loss", "ema_update_"]

CITATION = """
@inproceedings{hu2025degla,
  title     = {Decoupled Global-Local Alignment for Improving Compositional Understanding},
  author    = {Hu, Xiaoxing and Yang, Kaicheng and Wang, Jun and Xu, Haoran and Feng, Ziyong and
               Wang, Yupei},
  booktitle = {Proceedings of the 33rd ACM International Conference on Multimedia},
  year      = {2025},
  note      = {arXiv:2504.16801}
}
"""

TGCLayout = Literal["paper", "code"]
TGC_LAYOUTS: tuple[str, ...] = ("paper", "code")


class DeGLAOutput(NamedTuple):
    """The total DeGLA loss and its unweighted parts (all scalars), as the official loss returns."""

    loss: torch.Tensor
    global_loss: torch.Tensor
    tgc: torch.Tensor
    igc: torch.Tensor
    distill: torch.Tensor


def _i2t_block(
    start: int, stop: int, image: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Image rows ``start:stop`` against all (1 + K)B texts: CE to column i."""
    logits = scale * image[start:stop] @ texts.T
    rows = torch.arange(start, stop, device=image.device)
    return torch.logsumexp(logits, dim=1) - logits[rows - start, rows]


def _t2i_block(
    start: int, stop: int, text_pos: torch.Tensor, image: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Positive-caption rows ``start:stop`` against the B images: CE to column i."""
    logits = scale * text_pos[start:stop] @ image.T
    rows = torch.arange(start, stop, device=image.device)
    return torch.logsumexp(logits, dim=1) - logits[rows - start, rows]


def _local_ce(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``CE([pos, neg_1..neg_K], 0)``; ``pos`` (B,), ``neg`` (B, K)."""
    logits = torch.cat([pos[:, None], neg], dim=1)
    return (torch.logsumexp(logits, dim=1) - pos).mean()


def _tgc_columns(b: int, k: int, layout: str, device: torch.device) -> torch.Tensor:
    """(B, K) rows of the flat negative block that row i of TGC keeps.

    ``paper``: i's own negatives ``K i + k``. ``code``: the released ``mask_0.repeat(1, K)``,
    which keeps columns ``k B + i`` of the negative block (mostly other captions' negatives).
    """
    i = torch.arange(b, device=device)[:, None]
    kk = torch.arange(k, device=device)[None, :]
    return k * i + kk if layout == "paper" else kk * b + i


def _check_inputs(
    fn: str,
    image: torch.Tensor,
    text_pos: torch.Tensor,
    text_neg: torch.Tensor,
    teacher_image: torch.Tensor,
    teacher_text: torch.Tensor,
) -> int:
    """Validate shapes/dtypes/devices; return K, the negatives per sample."""
    _checks.check_embeddings(fn, "image", image, min_rows=1)
    named = {
        "text_pos": text_pos,
        "text_neg": text_neg,
        "teacher_image": teacher_image,
        "teacher_text": teacher_text,
    }
    for name, x in named.items():
        _checks.check_float(fn, name, x)
        if x.dim() != 2:
            raise ValueError(f"{fn}: {name} must have shape (N, D); got {tuple(x.shape)}")
        _checks.check_same_dim(fn, name, x, "image", image)
        _checks.check_same_device(fn, name, x, "image", image)
        _checks.check_same_dtype(fn, name, x, "image", image)
    b = image.shape[0]
    _checks.check_same_shape(fn, "text_pos", text_pos, "image", image)
    _checks.check_same_shape(fn, "teacher_image", teacher_image, "image", image)
    if text_neg.shape[0] % b:
        raise ValueError(
            f"{fn}: text_neg must have B*K rows (K negatives per sample, sample-major) with "
            f"B={b}; got {tuple(text_neg.shape)}"
        )
    n_text = b + text_neg.shape[0]
    if teacher_text.shape[0] != n_text:
        raise ValueError(
            f"{fn}: teacher_text must have B + B*K = {n_text} rows ([positives; negatives]); "
            f"got {tuple(teacher_text.shape)}"
        )
    return text_neg.shape[0] // b


def _check_scale(fn: str, logit_scale: float | torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if isinstance(logit_scale, torch.Tensor):
        _checks.check_float(fn, "logit_scale", logit_scale)
        if logit_scale.numel() != 1:
            raise ValueError(
                f"{fn}: logit_scale must be a scalar; got shape {tuple(logit_scale.shape)}"
            )
        _checks.check_same_device(fn, "logit_scale", logit_scale, "image", ref)
        if not bool(logit_scale.detach() > 0):
            raise ValueError(f"{fn}: logit_scale must be > 0 (the exponentiated scale)")
        return logit_scale.reshape(()).to(compute_dtype(ref))
    s = _checks.check_positive(fn, "logit_scale", logit_scale)
    return torch.tensor(s, dtype=compute_dtype(ref), device=ref.device)


def _check_hparams(
    fn: str,
    tgc_scale: float,
    igc_weight: float,
    tgc_weight: float,
    distill_weight: float,
    tgc_layout: str,
) -> tuple[float, float, float, float, TGCLayout]:
    return (
        _checks.check_positive(fn, "tgc_scale", tgc_scale),
        _checks.check_nonnegative(fn, "igc_weight", igc_weight),
        _checks.check_nonnegative(fn, "tgc_weight", tgc_weight),
        _checks.check_nonnegative(fn, "distill_weight", distill_weight),
        _checks.check_choice(fn, "tgc_layout", tgc_layout, TGC_LAYOUTS),  # type: ignore[return-value]
    )


def degla_loss(
    image: torch.Tensor,
    text_pos: torch.Tensor,
    text_neg: torch.Tensor,
    *,
    teacher_image: torch.Tensor,
    teacher_text: torch.Tensor,
    logit_scale: float | torch.Tensor,
    tgc_scale: float = 10.0,
    igc_weight: float = 0.1,
    tgc_weight: float = 0.1,
    distill_weight: float = 0.005,
    tgc_layout: TGCLayout = "paper",
    return_parts: bool = False,
) -> torch.Tensor | DeGLAOutput:
    """DeGLA loss: NegCLIP global term + 0.1 TGC + 0.1 IGC + 0.005 sum-MSE self-distillation.

    Hu, Yang, Wang, Xu, Feng, Wang. *Decoupled Global-Local Alignment for Improving
    Compositional Understanding.* ACM MM 2025, arXiv 2504.16801.

    Features are used as given (open_clip models return them L2-normalised). With B images
    ``I`` (B, D), positive captions ``P`` (B, D), negatives ``N`` (B*K, D) **sample-major**
    (row ``K i + k`` is negative k of sample i), texts ``T = [P; N]``, ``s = logit_scale``
    (the exponentiated scale, as open_clip's model returns it) and teacher features
    ``I_bar``, ``T_bar = [P_bar; N_bar]``::

        L_g   = 1/2 [ CE(s I T^T, i) + CE(s P I^T, i) ]            (NegCLIP)
        L_IGC = CE(s [I_i.P_i, I_i.N_{Ki..Ki+K-1}], 0)               (own negatives)
        L_TGC = CE(c [P_i.P_bar_i, P_i.N_{cols(i)}], 0),  c = tgc_scale = 10
        L_d   = ||I - I_bar||^2 + ||T - T_bar||^2                    (sum over all entries)
        L     = L_g + tgc_weight L_TGC + igc_weight L_IGC + distill_weight L_d

    CE is averaged over the B rows. Image-to-text rows see all (1 + K)B texts; text-to-image
    rows are the positive captions only. Teacher features are detached (the official teacher
    runs under ``no_grad``).

    Code vs paper: the released TGC masks with ``mask_0.repeat(1, K)``, which keeps columns
    ``k B + i`` of the negative block: with sample-major negatives those are mostly *other*
    samples' negatives (IGC's ``repeat_interleave`` is right). ``tgc_layout="paper"`` (default)
    keeps sample i's own negatives ``K i + k`` as the paper describes; ``"code"`` reproduces the
    release. The two agree only for rows where ``k B + i`` happens to fall in ``[K i, K i + K)``.

    Memory: the global term is tiled over rows (no (B, (1 + K)B) matrix beyond one block); IGC
    and TGC gather their 1 + K candidates per row, O(B K).

    Args:
        image: (B, D) student image features.
        text_pos: (B, D) student features of the true captions.
        text_neg: (B*K, D) student features of the negatives, sample-major; K >= 0.
        teacher_image: (B, D) teacher image features.
        teacher_text: (B + B*K, D) teacher text features, ``[positives; negatives]``.
        logit_scale: s > 0, a float or a scalar tensor (gradients flow into it).
        tgc_scale: fixed TGC scale (10 in the code, i.e. temperature 0.1).
        igc_weight: weight of IGC (0.1).
        tgc_weight: weight of TGC (0.1).
        distill_weight: weight of the distillation (0.005).
        tgc_layout: ``"paper"`` (own negatives) or ``"code"`` (the released mask).
        return_parts: return a :class:`DeGLAOutput` with the unweighted parts.

    Returns:
        The scalar loss (float32 for half inputs), or a :class:`DeGLAOutput`.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-bool flag.
        ValueError: wrong shapes (text_neg rows not a multiple of B, teacher_text rows not
            B + B*K), mismatched devices, non-positive scales, negative weights, bad layout.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> g = torch.Generator().manual_seed(0)
        >>> unit = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1)
        >>> i, p, n = unit(4, 8), unit(4, 8), unit(16, 8)
        >>> degla_loss(i, p, n, teacher_image=i, teacher_text=torch.cat([p, n]),
        ...            logit_scale=100.0).shape
        torch.Size([])
    """
    fn = "degla_loss"
    k = _check_inputs(fn, image, text_pos, text_neg, teacher_image, teacher_text)
    scale = _check_scale(fn, logit_scale, image)
    tgc_c, w_igc, w_tgc, w_d, layout = _check_hparams(
        fn, tgc_scale, igc_weight, tgc_weight, distill_weight, tgc_layout
    )
    _checks.check_bool(fn, "return_parts", return_parts)
    dt = compute_dtype(image)
    img, pos, neg = image.to(dt), text_pos.to(dt), text_neg.to(dt)
    t_img, t_txt = teacher_image.detach().to(dt), teacher_text.detach().to(dt)
    b, d = img.shape
    texts = torch.cat([pos, neg])

    i2t = map_rows(_i2t_block, b, texts.shape[0], img, texts, scale)
    t2i = map_rows(_t2i_block, b, b, pos, img, scale)
    global_loss = 0.5 * (i2t.mean() + t2i.mean())

    neg3 = neg.reshape(b, k, d)
    igc = _local_ce(scale * (img * pos).sum(1), scale * torch.einsum("bd,bkd->bk", img, neg3))
    cols = _tgc_columns(b, k, layout, img.device)
    tgc_neg = torch.einsum("bd,bkd->bk", pos, neg[cols])
    tgc = _local_ce(tgc_c * (pos * t_txt[:b]).sum(1), tgc_c * tgc_neg)
    distill = (img - t_img).pow(2).sum() + (texts - t_txt).pow(2).sum()

    total = global_loss + w_tgc * tgc + w_igc * igc + w_d * distill
    if return_parts:
        return DeGLAOutput(total, global_loss, tgc, igc, distill)
    return total


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, *, decay: float = 0.9996) -> nn.Module:
    """In place: ``theta_bar <- decay * theta_bar + (1 - decay) * theta`` over all parameters.

    DeGLA's ``update_teacher_ema`` (``src/training/train.py``), called after every optimizer
    step; parameters are paired in ``parameters()`` order, buffers are left alone (as in the
    code). ``decay=1`` leaves the teacher unchanged, ``decay=0`` copies the student.

    Args:
        teacher: the EMA model, updated in place.
        student: the trained model (same architecture).
        decay: in [0, 1] (0.9996 in the paper).

    Returns:
        ``teacher``.

    Raises:
        TypeError: non-module arguments.
        ValueError: decay outside [0, 1]; parameter count or shapes differ.

    Example:
        >>> from torch import nn
        >>> t, s = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> _ = ema_update_(t, s, decay=0.0)
        >>> bool((t.weight == s.weight).all())
        True
    """
    fn = "ema_update_"
    for name, m in (("teacher", teacher), ("student", student)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{fn}: {name} must be an nn.Module; got {type(m).__name__}")
    a = _checks.check_range(fn, "decay", decay, 0.0, 1.0)
    tp, sp = list(teacher.parameters()), list(student.parameters())
    if len(tp) != len(sp):
        raise ValueError(
            f"{fn}: teacher has {len(tp)} parameters but student has {len(sp)}; "
            "give two models of one architecture"
        )
    for j, (t, s) in enumerate(zip(tp, sp, strict=True)):
        if t.shape != s.shape:
            raise ValueError(
                f"{fn}: parameter {j} has shape {tuple(t.shape)} in teacher but "
                f"{tuple(s.shape)} in student"
            )
    for t, s in zip(tp, sp, strict=True):
        t.mul_(a).add_(s.to(t.dtype), alpha=1.0 - a)
    return teacher


class DeGLALoss(nn.Module):
    """Module form of :func:`degla_loss` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> i, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(8, 8)
        >>> DeGLALoss()(i, p, n, teacher_image=i, teacher_text=torch.cat([p, n]),
        ...             logit_scale=10.0).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        tgc_scale: float = 10.0,
        igc_weight: float = 0.1,
        tgc_weight: float = 0.1,
        distill_weight: float = 0.005,
        tgc_layout: TGCLayout = "paper",
    ) -> None:
        super().__init__()
        c, wi, wt, wd, lay = _check_hparams(
            "DeGLALoss", tgc_scale, igc_weight, tgc_weight, distill_weight, tgc_layout
        )
        self.tgc_scale, self.igc_weight, self.tgc_weight, self.distill_weight = c, wi, wt, wd
        self.tgc_layout: TGCLayout = lay

    def forward(
        self,
        image: torch.Tensor,
        text_pos: torch.Tensor,
        text_neg: torch.Tensor,
        *,
        teacher_image: torch.Tensor,
        teacher_text: torch.Tensor,
        logit_scale: float | torch.Tensor,
    ) -> torch.Tensor:
        """The scalar DeGLA loss (see :func:`degla_loss`)."""
        out = degla_loss(
            image,
            text_pos,
            text_neg,
            teacher_image=teacher_image,
            teacher_text=teacher_text,
            logit_scale=logit_scale,
            tgc_scale=self.tgc_scale,
            igc_weight=self.igc_weight,
            tgc_weight=self.tgc_weight,
            distill_weight=self.distill_weight,
            tgc_layout=self.tgc_layout,
        )
        return cast(torch.Tensor, out)  # return_parts=False: a tensor

    def extra_repr(self) -> str:
        return (
            f"tgc_scale={self.tgc_scale}, igc_weight={self.igc_weight}, "
            f"tgc_weight={self.tgc_weight}, distill_weight={self.distill_weight}, "
            f"tgc_layout={self.tgc_layout!r}"
        )
