"""CLIPN (Wang et al., ICCV 2023): teach a CLIP-style model to say "no" for zero-shot OOD detection.

A frozen image tower ``f`` and a frozen "yes" text tower ``g`` are joined by a "no" text tower
``g_no`` (an exact copy of ``g`` at the start) and learnable "no" prompts
``P in R^{K x L x W}`` (``K = 16``, zero init) that are **added** to the token + position
embeddings of every position (not prepended as CoOp context tokens). Only ``g_no`` and ``P``
train. With unit features ``i = f(x)``, ``t_j = g(c_j)``, ``t^no_j = g_no(c_j)`` of a batch of
``N`` matched (image, caption) pairs and ``tau = exp(logit_scale)``:

- **ITBO** (image-text binary-opposite): ``s_ij = tau i_i.t_j``, ``s^no_ij = tau i_i.t^no_j``,
  ``p_ij = softmax([s_ij, s^no_ij])``; ``L_yes = (1/N) sum_i -log p_ii[yes]`` and
  ``L_no = 1/(N^2 - N) sum_{i != j} -log p_ij[no]``.
- **TSO** (text semantic-opposite): ``L_tso = mean_j 2 - sqrt(2 - 2 t_j.t^no_j + 1e-4)``
  (``mode="cosine"``: ``mean_j t_j.t^no_j + 1``, present in the code but unused).
- Total: ``L = 0.5 (L_yes + L_no + L_tso)``; there is no CLIP InfoNCE term.

Inference: class heads ``W[c] = normalize(sum_k normalize(g(template_k(c))))`` (likewise ``W_no``
with ``g_no``; :func:`merge_templates`), ``logits = tau i.W^T``, ``logits_no = tau i.W_no^T``,
``p = softmax_c(logits)``, ``q_c = softmax([logits_c, logits_no_c])[yes]``. The official scores
are ID-high: CTW ``q_chat`` with ``chat = argmax logits``, ATD ``sum_c q_c p_c``. Here both are
returned as ``1 - score`` so that **higher = more OOD**, as for every `posneg.ood` detector.

Transcribed from the official code ``xmed-lab/CLIPN`` at commit e465074:
``src/open_clip/loss.py`` (``ClipLoss.forward``, ``image_text_binary_opposite_loss``,
``text_semantic_opposite_loss``), ``src/open_clip/model.py`` (``CLIP.encode_text``: prompt draw
in training, mean prompt at inference), ``src/training/train.py`` (``0.5 *`` the sum),
``src/classification.py`` (``merge_yes_no_feature``, ``ViT_Classifier``) and
``src/zero_shot_infer.py`` (``cal_all_metric``: CTW, ATD). Deliberate differences, each shown in
a test: (1) ``ClipLoss.forward`` defines ``logits_per_image_no`` only on its multi-GPU branch (a
single-process run raises NameError); here the intended math runs on whatever batch the caller
passes (gather it first for the multi-GPU form). (2) The code takes ``-log(softmax(.))``; here
``softplus`` of the logit difference, equal in exact arithmetic but finite where the softmax
underflows to 0 (the code gives ``inf`` there). (3) The code draws the training prompt index with
``np.random``; here from ``generator``.

Usable with any open_clip model: pass its unit image features, the "yes" and "no" text features
and ``model.logit_scale.exp()``. For the prompts, the caller provides the "no" tower's token +
position embeddings ``(N, L, W)`` before its transformer (for open_clip:
``token_embedding_no(text) + positional_embedding_no``) and runs the rest of the tower on the
result of :func:`add_no_prompt`.

Example:
    >>> import torch, torch.nn.functional as F
    >>> img = F.normalize(torch.randn(4, 8), dim=1)
    >>> yes, no = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(4, 8), dim=1)
    >>> CLIPNLoss()(img, yes, no, torch.tensor(100.0)).dim()
    0
    >>> CLIPNScore(rule="atd")(img, yes, no).shape
    torch.Size([4])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = [
    "CLIPNLoss",
    "CLIPNNoPrompt",
    "CLIPNScore",
    "add_no_prompt",
    "atd_score",
    "clipn_logits",
    "clipn_loss",
    "ctw_score",
    "itbo_loss",
    "merge_templates",
    "tso_loss",
]

CITATION = """
@inproceedings{wang2023clipn,
  title     = {{CLIPN} for Zero-Shot {OOD} Detection: Teaching {CLIP} to Say No},
  author    = {Wang, Hualiang and Li, Yi and Yao, Huifeng and Li, Xiaomeng},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2023},
  note      = {arXiv:2308.12213}
}
"""

TSO_EPS = 1e-4  # loss.py: "epsilon = 1e-4, used to get rid of infinity gradient"
_TSO_MODES = ("l2", "cosine")
_RULES = ("ctw", "atd")


def _scale(fn: str, logit_scale: Any, ref: torch.Tensor) -> torch.Tensor:
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1:
            raise ValueError(f"{fn}: logit_scale must be a scalar; got {tuple(logit_scale.shape)}")
        return logit_scale.reshape(()).to(ref.dtype)
    return torch.tensor(_checks.check_positive(fn, "logit_scale", logit_scale), dtype=ref.dtype)


def _triple(
    fn: str, image: Any, text: Any, text_no: Any, *, paired: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    i = _checks.check_embeddings(fn, "image_features", image)
    t = _checks.check_embeddings(fn, "text_features", text)
    t_no = _checks.check_embeddings(fn, "text_features_no", text_no)
    _checks.check_same_shape(fn, "text_features_no", t_no, "text_features", t)
    _checks.check_same_dim(fn, "text_features", t, "image_features", i)
    _checks.check_same_device(fn, "text_features", t, "image_features", i)
    _checks.check_same_device(fn, "text_features_no", t_no, "image_features", i)
    if paired:
        _checks.check_same_shape(fn, "text_features", t, "image_features", i)
        if i.shape[0] < 2:
            raise ValueError(f"{fn}: the batch needs N >= 2 pairs (L_no averages over N^2 - N)")
    return i, t, t_no


def itbo_loss(
    *,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_features_no: torch.Tensor,
    logit_scale: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-text binary-opposite loss ``(L_yes, L_no)`` over a batch of ``N`` matched pairs.

    Args:
        image_features: ``(N, D)`` unit image features ``i``.
        text_features: ``(N, D)`` unit "yes" features ``t`` of the matched captions.
        text_features_no: ``(N, D)`` unit "no" features ``t^no`` of the same captions.
        logit_scale: ``tau`` (the model's ``logit_scale.exp()``), tensor or float.

    Returns:
        ``L_yes = mean_i -log p_ii[yes]`` and ``L_no = sum_{i!=j} -log p_ij[no] / (N^2 - N)``;
        the ``N x N`` pair matrix is the objective itself, computed once (no larger tensor).
    """
    fn = "itbo_loss"
    i, t, t_no = _triple(fn, image_features, text_features, text_features_no, paired=True)
    acc = torch.promote_types(i.dtype, torch.float32)
    i, t, t_no = i.to(acc), t.to(acc), t_no.to(acc)
    tau = _scale(fn, logit_scale, i)
    gap = tau * (i @ t_no.T) - tau * (i @ t.T)  # s^no - s: -log p[yes] = softplus(gap)
    n = i.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=i.device)
    loss_yes = F.softplus(gap.diagonal()).sum() / n
    loss_no = F.softplus(-gap).masked_fill(eye, 0.0).sum() / (n * n - n)
    return loss_yes, loss_no


def tso_loss(
    *, text_features: torch.Tensor, text_features_no: torch.Tensor, mode: str = "l2"
) -> torch.Tensor:
    """Text semantic-opposite loss: ``mean_j 2 - sqrt(2 - 2 t_j.t^no_j + 1e-4)`` (``mode="l2"``).

    ``mode="cosine"`` gives ``mean_j t_j.t^no_j + 1`` (defined in the code, unused). With
    ``t^no = -t`` the L2 form is ``2 - sqrt(4.0001) < 0``: it is not bounded below by 0.
    """
    fn = "tso_loss"
    t = _checks.check_embeddings(fn, "text_features", text_features)
    t_no = _checks.check_embeddings(fn, "text_features_no", text_features_no)
    _checks.check_same_shape(fn, "text_features_no", t_no, "text_features", t)
    _checks.check_same_device(fn, "text_features_no", t_no, "text_features", t)
    mode = _checks.check_choice(fn, "mode", mode, _TSO_MODES)
    acc = torch.promote_types(t.dtype, torch.float32)
    dot = (t.to(acc) * t_no.to(acc)).sum(-1)
    if mode == "cosine":
        return (dot + 1.0).mean()
    return (2.0 - torch.sqrt(2.0 - 2.0 * dot + TSO_EPS)).mean()


def clipn_loss(
    *,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_features_no: torch.Tensor,
    logit_scale: torch.Tensor | float,
    tso_mode: str = "l2",
    weight: float = 0.5,
) -> torch.Tensor:
    """The CLIPN training loss ``weight * (L_yes + L_no + L_tso)`` (train.py: ``weight = 0.5``)."""
    w = _checks.check_positive("clipn_loss", "weight", weight)
    yes, no = itbo_loss(
        image_features=image_features,
        text_features=text_features,
        text_features_no=text_features_no,
        logit_scale=logit_scale,
    )
    tso = tso_loss(text_features=text_features, text_features_no=text_features_no, mode=tso_mode)
    return w * (yes + no + tso)


def add_no_prompt(
    embeddings: torch.Tensor,
    prompts: torch.Tensor,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add a learnable "no" prompt to the "no" tower's token + position embeddings.

    Args:
        embeddings: ``(N, L, W)`` token + position embeddings of the captions (the "no" tower's).
        prompts: ``(K, L_max, W)`` prompt parameters, ``L <= L_max`` (the first ``L`` positions are
            used; the official ``L = L_max = 77``).
        train: ``True``: each caption gets one of the ``K + 1`` prompts (the ``K`` and their mean),
            drawn uniformly from ``generator``; ``False``: the mean prompt for every caption.
        generator: the draw in training (``None``: the global RNG).

    Returns:
        ``(N, L, W)`` embeddings + prompt, for the rest of the "no" text tower.
    """
    fn = "add_no_prompt"
    x = _checks.check_float(fn, "embeddings", embeddings)
    p = _checks.check_float(fn, "prompts", prompts)
    _checks.check_bool(fn, "train", train)
    if x.dim() != 3 or p.dim() != 3:
        raise ValueError(
            f"{fn}: embeddings must be (N, L, W) and prompts (K, L_max, W); "
            f"got {tuple(x.shape)} and {tuple(p.shape)}"
        )
    if x.shape[2] != p.shape[2] or x.shape[1] > p.shape[1]:
        raise ValueError(
            f"{fn}: embeddings (N, L, W) = {tuple(x.shape)} need W equal to and L <= those of "
            f"prompts {tuple(p.shape)}"
        )
    _checks.check_same_device(fn, "embeddings", x, "prompts", p)
    p = p[:, : x.shape[1]]
    mean = p.mean(dim=0, keepdim=True)
    if not train:
        return x + mean
    _checks.check_generator(fn, generator)
    idx = torch.randint(0, p.shape[0] + 1, (x.shape[0],), generator=generator)
    return x + torch.cat([p, mean], dim=0)[idx.to(p.device)]


def merge_templates(features: torch.Tensor) -> torch.Tensor:
    """Class heads from per-template text features: ``(T, C, D) -> (C, D)``.

    ``W[c] = normalize(sum_k normalize(features[k, c]))`` (``merge_yes_no_feature``).
    """
    fn = "merge_templates"
    f = _checks.check_float(fn, "features", features)
    if f.dim() != 3 or min(f.shape) < 1:
        raise ValueError(f"{fn}: features must have shape (T, C, D); got {tuple(f.shape)}")
    return F.normalize(F.normalize(f, dim=-1).sum(0), dim=-1)


def clipn_logits(
    *,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_features_no: torch.Tensor,
    logit_scale: torch.Tensor | float = 100.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, logits_no)``, each ``(N, C)``: ``tau i.W^T`` and ``tau i.W_no^T``.

    Image features and class heads ``(C, D)`` are L2-normalised here (``ViT_Classifier``; its
    fixed scale is 100).
    """
    return _logits("clipn_logits", image_features, text_features, text_features_no, logit_scale)


def _logits(
    fn: str, image: Any, text: Any, text_no: Any, logit_scale: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    i, w, w_no = _triple(fn, image, text, text_no, paired=False)
    tau = _scale(fn, logit_scale, i)
    i = F.normalize(i, dim=-1)
    return tau * i @ F.normalize(w, dim=-1).T, tau * i @ F.normalize(w_no, dim=-1).T


def _probabilities(
    fn: str, image: Any, text: Any, text_no: Any, logit_scale: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, logits_no = _logits(fn, image, text, text_no, logit_scale)
    q = torch.sigmoid(logits - logits_no)  # softmax([yes, no])[yes]
    return logits, q, torch.softmax(logits, dim=1)


def ctw_score(
    *,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_features_no: torch.Tensor,
    logit_scale: torch.Tensor | float = 100.0,
) -> torch.Tensor:
    """CTW ("competing-to-win") OOD score ``1 - q_chat``, ``chat = argmax_c logits``; ``(N,)``.

    Args:
        image_features: ``(N, D)`` image features.
        text_features: ``(C, D)`` "yes" class heads (e.g. :func:`merge_templates`).
        text_features_no: ``(C, D)`` "no" class heads.
        logit_scale: ``tau`` (100 in the official inference).

    Returns:
        ``(N,)`` in ``[0, 1]``, higher = more OOD; the paper's rule calls OOD where it is > 0.5.
    """
    logits, q, _ = _probabilities(
        "ctw_score", image_features, text_features, text_features_no, logit_scale
    )
    return 1.0 - q.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1)


def atd_score(
    *,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_features_no: torch.Tensor,
    logit_scale: torch.Tensor | float = 100.0,
) -> torch.Tensor:
    """ATD ("agreeing-to-differ") OOD score ``p_ood = 1 - sum_c q_c p_c``; ``(N,)`` in [0, 1].

    Arguments as :func:`ctw_score`; higher = more OOD.
    """
    _, q, p = _probabilities(
        "atd_score", image_features, text_features, text_features_no, logit_scale
    )
    return 1.0 - (q * p).sum(dim=1)


class CLIPNLoss(nn.Module):
    """CLIPN's loss ``weight * (L_yes + L_no + L_tso)``; see :func:`clipn_loss`.

    Args:
        tso_mode: ``"l2"`` (used) or ``"cosine"``.
        weight: the factor on the sum (0.5 in train.py).

    Example:
        >>> import torch.nn.functional as F
        >>> f = F.normalize(torch.randn(4, 8), dim=1)
        >>> CLIPNLoss()(f, f, -f, 100.0) > 1.0
        tensor(True)
    """

    def __init__(self, tso_mode: str = "l2", weight: float = 0.5) -> None:
        super().__init__()
        self.tso_mode = _checks.check_choice("CLIPNLoss", "tso_mode", tso_mode, _TSO_MODES)
        self.weight = _checks.check_positive("CLIPNLoss", "weight", weight)

    def extra_repr(self) -> str:
        return f"tso_mode={self.tso_mode!r}, weight={self.weight}"

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        text_features_no: torch.Tensor,
        logit_scale: torch.Tensor | float,
    ) -> torch.Tensor:
        return clipn_loss(
            image_features=image_features,
            text_features=text_features,
            text_features_no=text_features_no,
            logit_scale=logit_scale,
            tso_mode=self.tso_mode,
            weight=self.weight,
        )


class CLIPNNoPrompt(nn.Module):
    """The learnable "no" prompts ``P`` (zero init), added to the "no" tower's embeddings.

    In training mode ``forward`` draws one of the ``K + 1`` prompts per caption (``generator``);
    in eval mode it adds the mean prompt. See :func:`add_no_prompt`.

    Args:
        context_length: ``L_max`` (77 for open_clip).
        width: the text tower's embedding width ``W``.
        num_prompts: ``K`` (16 in the official model).

    Example:
        >>> prompt = CLIPNNoPrompt(context_length=8, width=4).eval()
        >>> prompt(torch.zeros(2, 8, 4)).abs().sum().item()
        0.0
    """

    def __init__(self, context_length: int, width: int, num_prompts: int = 16) -> None:
        super().__init__()
        fn = "CLIPNNoPrompt"
        self.context_length = _checks.check_int(fn, "context_length", context_length, min_value=1)
        self.width = _checks.check_int(fn, "width", width, min_value=1)
        self.num_prompts = _checks.check_int(fn, "num_prompts", num_prompts, min_value=1)
        self.prompt = nn.Parameter(torch.zeros(self.num_prompts, self.context_length, self.width))

    def extra_repr(self) -> str:
        return (
            f"context_length={self.context_length}, width={self.width}, "
            f"num_prompts={self.num_prompts}"
        )

    def forward(
        self, embeddings: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        prompts = (
            self.prompt.to(embeddings.dtype) if embeddings.is_floating_point() else self.prompt
        )
        return add_no_prompt(embeddings, prompts, train=self.training, generator=generator)


class CLIPNScore(nn.Module):
    """CLIPN OOD score (higher = more OOD): ``rule="atd"`` (:func:`atd_score`) or ``"ctw"``.

    Args:
        rule: ``"atd"`` or ``"ctw"``.
        logit_scale: ``tau`` (100, the official inference scale).

    ``forward(image_features, text_features, text_features_no)`` with ``(N, D)`` images and
    ``(C, D)`` yes/no class heads returns ``(N,)`` scores; ``score`` is the same.
    """

    def __init__(self, rule: str = "atd", logit_scale: float = 100.0) -> None:
        super().__init__()
        self.rule = _checks.check_choice("CLIPNScore", "rule", rule, _RULES)
        self.logit_scale = _checks.check_positive("CLIPNScore", "logit_scale", logit_scale)

    def extra_repr(self) -> str:
        return f"rule={self.rule!r}, logit_scale={self.logit_scale}"

    def score(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        text_features_no: torch.Tensor,
    ) -> torch.Tensor:
        """``(N,)`` OOD scores in ``[0, 1]``."""
        rule = atd_score if self.rule == "atd" else ctw_score
        return rule(
            image_features=image_features,
            text_features=text_features,
            text_features_no=text_features_no,
            logit_scale=self.logit_scale,
        )

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        text_features_no: torch.Tensor,
    ) -> torch.Tensor:
        return self.score(image_features, text_features, text_features_no)
