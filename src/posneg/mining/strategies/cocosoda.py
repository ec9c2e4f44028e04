"""CoCoSoDa: soft data augmentation for code, momentum encoders, multimodal contrastive terms.

Shi, Wang, Gu, Du, Zhang, Han, Zhang, Sun. *CoCoSoDa: Effective Contrastive Learning for Code
Search.* ICSE 2023, arXiv 2204.03293. Official code: ``DeepSoftwareAnalytics/CoCoSoDa`` at commit
``2f2bf8e7994acef846ede7c1078a0b18bc4154d9``: ``model.py::Multi_Loss_CoCoSoDa`` (``forward``,
``_dequeue_and_enqueue``, ``_momentum_update_key_encoder``) and ``run.py`` (``train``,
``mask_tokens``, ``replace_with_type_tokens``, ``replace_special_token_with_mask``).

One query encoder embeds code and NL (``code_q``, ``nl_q``: un-augmented inputs, with
gradient); its momentum copy embeds the augmented inputs (``code_k``, ``nl_k``, no gradient).
For a direction a -> b with in-batch keys ``B`` and queue ``Q_b`` the logits are
``[time_score * A B^T, A Q_b^T] / T`` with labels ``arange(B)``; the four directions code->NL,
code->masked NL, NL->code, NL->masked code (``inner=True`` adds code->masked code and
NL->masked NL) are stacked and the loss is ``CE(scale * logits, labels)`` with ``scale = 20``
(the code applies ``/T`` and then ``x 20``). After the loss the queues take ``code_q``,
``nl_q`` (query-encoder outputs!), ``code_k`` and ``nl_k`` (:class:`CoCoSoDaQueues`, on
:class:`posneg.negatives.MemoryQueue`). The momentum update (:func:`momentum_update`) runs at
every forward before the keys are encoded.

Soft data augmentation (:func:`soda_augment`) cycles on ``step % 4`` as ``run.py::train``:
0: BERT masking of code and NL (:func:`soda_mask_tokens`); 1 and 2: the released
"replace with type tokens" ops replace tokens by themselves (no-ops, reproduced as such; the
generator still advances as the code's draws do not matter); 3: one special token's occurrences
become [MASK] with probability ``0.8 p`` (:func:`soda_replace_token_with_mask`). NL is augmented
only at step 0; the first ``keep_prefix = 3`` positions (UniXcoder's prefix) are never touched.

Deliberate differences from the code: the queues start empty (:class:`~posneg.negatives.
MemoryQueue`) instead of holding random unit vectors, so no random vectors act as negatives; the
special token of step 3 is drawn with ``generator`` instead of ``random.seed(step)``; the global
RNG is never re-seeded (the code calls ``torch.manual_seed(3047)`` in ``__init__``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype
from posneg.negatives.queue import MemoryQueue

__all__ = [
    "CITATION",
    "CoCoSoDaLoss",
    "CoCoSoDaQueues",
    "cocosoda_loss",
    "momentum_update",
    "soda_augment",
    "soda_mask_tokens",
    "soda_replace_token_with_mask",
]

CITATION = """@inproceedings{shi2023cocosoda,
  title     = {CoCoSoDa: Effective Contrastive Learning for Code Search},
  author    = {Shi, Ensheng and Wang, Yanlin and Gu, Wenchao and Du, Lun and Zhang, Hongyu and
               Han, Shi and Zhang, Dongmei and Sun, Hongbin},
  booktitle = {IEEE/ACM 45th International Conference on Software Engineering (ICSE)},
  year      = {2023}
}"""


def _check_tokens(fn: str, tokens: torch.Tensor, keep_prefix: int, probability: float) -> None:
    _checks.check_tensor(fn, "tokens", tokens)
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{fn}: tokens must be an integer tensor; got {tokens.dtype}")
    if tokens.dim() != 2:
        raise ValueError(f"{fn}: tokens must have shape (B, L); got {tuple(tokens.shape)}")
    _checks.check_int(fn, "keep_prefix", keep_prefix, min_value=0)
    _checks.check_range(fn, "probability", probability, 0.0, 1.0)


def _bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(p.shape, generator=generator, device=p.device) < p


def soda_mask_tokens(
    tokens: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    pad_id: int = 1,
    probability: float = 0.1,
    keep_prefix: int = 3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Dynamic BERT masking (``run.py::mask_tokens`` on ``tokens[:, keep_prefix:]``).

    Each position after the prefix that is neither special nor padding is picked with
    ``probability``; a picked token becomes ``mask_token_id`` with probability 0.8, else a
    uniform random id in ``[0, vocab_size)`` with probability 0.5 (10% overall), else stays.

    Args:
        tokens: (B, L) int64 token ids (not modified).
        mask_token_id: the [MASK] id; vocab_size: size of the vocabulary (>= 1).
        special_ids: ids never masked (the tokenizer's special tokens); pad_id: never masked.
        probability: ``mlm_probability`` (0.1 in ``run_cocosoda.sh``).
        keep_prefix: leading positions left untouched (3).
        generator: draws (on ``tokens``' device).

    Returns:
        (B, L) augmented copy.

    Example:
        >>> t = torch.arange(10).repeat(2, 1)
        >>> out = soda_mask_tokens(t, mask_token_id=99, vocab_size=100, probability=1.0)
        >>> bool((out[:, :3] == t[:, :3]).all())
        True
    """
    fn = "soda_mask_tokens"
    _check_tokens(fn, tokens, keep_prefix, probability)
    _checks.check_int(fn, "vocab_size", vocab_size, min_value=1)
    _checks.check_generator(fn, generator, tokens.device)
    out = tokens.clone()
    body = out[:, keep_prefix:]
    p = torch.full(body.shape, float(probability), device=tokens.device)
    frozen = body == pad_id
    for sid in special_ids:
        frozen |= body == int(sid)
    p = p.masked_fill(frozen, 0.0)
    picked = _bernoulli(p, generator)
    replaced = _bernoulli(torch.full_like(p, 0.8), generator) & picked
    randomised = _bernoulli(torch.full_like(p, 0.5), generator) & picked & ~replaced
    words = torch.randint(
        vocab_size, body.shape, generator=generator, device=tokens.device, dtype=body.dtype
    )
    body[replaced] = int(mask_token_id)
    body[randomised] = words[randomised]
    return out


def soda_replace_token_with_mask(
    tokens: torch.Tensor,
    *,
    token_id: int,
    mask_token_id: int,
    probability: float = 0.1,
    keep_prefix: int = 3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Occurrences of ``token_id`` become [MASK] with probability ``0.8 * probability``.

    ``run.py::replace_special_token_with_mask`` on ``tokens[:, keep_prefix:]``: a Bernoulli
    pick at ``probability`` on the occurrences, then 80% of the picks are replaced.

    Example:
        >>> t = torch.tensor([[5, 5, 5, 7, 5]])
        >>> soda_replace_token_with_mask(t, token_id=7, mask_token_id=0, probability=0.0)
        tensor([[5, 5, 5, 7, 5]])
    """
    fn = "soda_replace_token_with_mask"
    _check_tokens(fn, tokens, keep_prefix, probability)
    _checks.check_generator(fn, generator, tokens.device)
    out = tokens.clone()
    body = out[:, keep_prefix:]
    p = torch.zeros(body.shape, device=tokens.device).masked_fill(
        body == int(token_id), float(probability)
    )
    picked = _bernoulli(p, generator)
    replaced = _bernoulli(torch.full_like(p, 0.8), generator) & picked
    body[replaced] = int(mask_token_id)
    return out


def soda_augment(
    code: torch.Tensor,
    nl: torch.Tensor,
    *,
    step: int,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    pad_id: int = 1,
    probability: float = 0.1,
    keep_prefix: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The key-side inputs of step ``step`` (``run.py::train``'s ``step % 4`` cycle).

    ``0``: :func:`soda_mask_tokens` on code and NL; ``1``, ``2``: the released no-ops (copies);
    ``3``: one of ``special_ids`` (drawn with ``generator``) replaced by [MASK] in the code
    (:func:`soda_replace_token_with_mask`). NL is augmented at ``0`` only.

    Returns:
        ``(code_k_inputs, nl_k_inputs)``, new tensors.

    Example:
        >>> c, n = torch.arange(8).repeat(2, 1), torch.arange(6).repeat(2, 1)
        >>> ck, nk = soda_augment(c, n, step=1, mask_token_id=99, vocab_size=100)
        >>> bool(torch.equal(ck, c) and torch.equal(nk, n))
        True
    """
    fn = "soda_augment"
    _checks.check_int(fn, "step", step, min_value=0)
    phase = step % 4
    if phase == 0:
        kw = {
            "mask_token_id": mask_token_id,
            "vocab_size": vocab_size,
            "special_ids": special_ids,
            "pad_id": pad_id,
            "probability": probability,
            "keep_prefix": keep_prefix,
            "generator": generator,
        }
        return soda_mask_tokens(code, **kw), soda_mask_tokens(nl, **kw)  # type: ignore[arg-type]
    _check_tokens(fn, code, keep_prefix, probability)
    if phase == 3 and len(special_ids):
        pick = int(torch.randint(len(special_ids), (1,), generator=generator))
        code_k = soda_replace_token_with_mask(
            code,
            token_id=int(special_ids[pick]),
            mask_token_id=mask_token_id,
            probability=probability,
            keep_prefix=keep_prefix,
            generator=generator,
        )
        return code_k, nl.clone()
    return code.clone(), nl.clone()


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, *, momentum: float = 0.999) -> None:
    """EMA of the key encoder: ``k <- m k + (1 - m) q`` for every parameter, in place.

    ``model.py::_momentum_update_key_encoder``; ``momentum = 0`` copies the query weights.

    Example:
        >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        >>> momentum_update(a, b, momentum=0.0)
        >>> bool(torch.equal(a.weight, b.weight))
        True
    """
    fn = "momentum_update"
    _checks.check_range(fn, "momentum", momentum, 0.0, 1.0)
    kp, qp = list(key.parameters()), list(query.parameters())
    if len(kp) != len(qp) or any(k.shape != q.shape for k, q in zip(kp, qp, strict=True)):
        raise ValueError(f"{fn}: key and query must have parameters of the same shapes")
    for k, q in zip(kp, qp, strict=True):
        k.mul_(momentum).add_(q.detach(), alpha=1.0 - momentum)


def _direction(
    a: torch.Tensor, b: torch.Tensor, queue: torch.Tensor | None, time_score: float
) -> torch.Tensor:
    pos = time_score * (a @ b.T)
    if queue is None or queue.shape[0] == 0:
        return pos
    return torch.cat([pos, a @ queue.detach().to(a.dtype).T], dim=1)


def cocosoda_loss(
    code_q: torch.Tensor,
    nl_q: torch.Tensor,
    code_k: torch.Tensor,
    nl_k: torch.Tensor,
    *,
    queues: dict[str, torch.Tensor] | None = None,
    temperature: float = 0.07,
    time_score: float = 1.0,
    scale: float = 20.0,
    inner: bool = False,
) -> torch.Tensor:
    """CoCoSoDa's multimodal contrastive loss (``Multi_Loss_CoCoSoDa.forward`` + ``train``).

    Formula, per direction (A, B, Q) in [(code_q, nl_q, nl), (code_q, nl_k, masked_nl),
    (nl_q, code_q, code), (nl_q, code_k, masked_code)] (+ (code_q, code_k, masked_code),
    (nl_q, nl_k, masked_nl) with ``inner``)::

        logits = [time_score A B^T, A Q^T] / temperature          (B, B + K)
        loss   = CE(scale * logits over all directions stacked, arange(B) repeated)

    Args:
        code_q, nl_q: (B, D) query-encoder embeddings (L2-normalised by the caller), gradient.
        code_k, nl_k: (B, D) momentum-encoder embeddings of the augmented inputs.
        queues: ``{"code", "nl", "masked_code", "masked_nl"}`` -> (K, D) negatives (missing or
            empty: in-batch only).
        temperature: ``moco_t`` (0.07); time_score: the in-batch block's factor (1).
        scale: the ``20 *`` of ``run.py::train``.
        inner: ``--do_ineer_loss`` (off in ``run_cocosoda.sh``).

    Returns:
        Scalar mean over the stacked rows.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
        >>> cocosoda_loss(x, x, x, x).shape
        torch.Size([])
    """
    fn = "cocosoda_loss"
    names = ("code_q", "nl_q", "code_k", "nl_k")
    xs = (code_q, nl_q, code_k, nl_k)
    for name, x in zip(names, xs, strict=True):
        _checks.check_float(fn, name, x)
        if x.dim() != 2 or x.shape != code_q.shape:
            raise ValueError(
                f"{fn}: {name} must have shape (B, D) = {tuple(code_q.shape)}; got {tuple(x.shape)}"
            )
    _checks.check_positive(fn, "temperature", temperature)
    _checks.check_positive(fn, "scale", scale)
    _checks.check_real(fn, "time_score", time_score)
    q = dict(queues or {})
    unknown = set(q) - {"code", "nl", "masked_code", "masked_nl"}
    if unknown:
        raise ValueError(f"{fn}: unknown queues {sorted(unknown)}")
    for name, t in q.items():
        _checks.check_float(fn, f"queues[{name!r}]", t)
        if t.dim() != 2 or t.shape[1] != code_q.shape[1]:
            raise ValueError(f"{fn}: queues[{name!r}] must have shape (K, {code_q.shape[1]})")
    ct = compute_dtype(code_q)  # half inputs: float32 arithmetic and result
    code_q, nl_q = code_q.to(ct), nl_q.to(ct)
    code_k, nl_k = code_k.detach().to(ct), nl_k.detach().to(ct)
    pairs = [
        (code_q, nl_q, q.get("nl")),
        (code_q, nl_k, q.get("masked_nl")),
        (nl_q, code_q, q.get("code")),
        (nl_q, code_k, q.get("masked_code")),
    ]
    if inner:
        pairs += [(code_q, code_k, q.get("masked_code")), (nl_q, nl_k, q.get("masked_nl"))]
    rows = [_direction(a, b, k, time_score) / temperature for a, b, k in pairs]
    width = max(r.shape[1] for r in rows)
    logits = torch.cat([F.pad(r, (0, width - r.shape[1]), value=float("-inf")) for r in rows])
    labels = torch.arange(code_q.shape[0], device=code_q.device).repeat(len(rows))
    return F.cross_entropy(scale * logits, labels)


class CoCoSoDaQueues:
    """The four per-modality queues (``code``, ``nl``, ``masked_code``, ``masked_nl``).

    ``enqueue`` after the loss, as ``_dequeue_and_enqueue``: ``code_q``, ``nl_q`` (query-encoder
    outputs of the un-augmented inputs) and ``code_k``, ``nl_k``. Each is a
    :class:`~posneg.negatives.MemoryQueue` (starts empty, see the module docstring).

    Example:
        >>> qs = CoCoSoDaQueues(4, 2)
        >>> qs.enqueue(*(torch.ones(2, 2),) * 4)
        >>> {k: tuple(v.shape) for k, v in qs.negatives().items()}["nl"]
        (2, 2)
    """

    NAMES = ("code", "nl", "masked_code", "masked_nl")

    def __init__(
        self,
        capacity: int,
        dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.queues = {
            n: MemoryQueue(capacity, dim, dtype=dtype, device=device) for n in self.NAMES
        }

    def enqueue(
        self, code_q: torch.Tensor, nl_q: torch.Tensor, code_k: torch.Tensor, nl_k: torch.Tensor
    ) -> None:
        """Append one batch to each queue (detached)."""
        for name, keys in zip(self.NAMES, (code_q, nl_q, code_k, nl_k), strict=True):
            self.queues[name].enqueue(keys.detach())

    def negatives(self) -> dict[str, torch.Tensor]:
        """``name -> (n, D)`` current contents, oldest first."""
        return {n: q.negatives() for n, q in self.queues.items()}

    def __repr__(self) -> str:
        q = self.queues["code"]
        return f"CoCoSoDaQueues(capacity={q.capacity}, dim={q.dim}, filled={len(q)})"


class CoCoSoDaLoss(nn.Module):
    """Module form of :func:`cocosoda_loss` (stateless; the queues are passed in).

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
        >>> CoCoSoDaLoss()(x, x, x, x).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        time_score: float = 1.0,
        scale: float = 20.0,
        inner: bool = False,
    ) -> None:
        super().__init__()
        fn = "CoCoSoDaLoss"
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.time_score = _checks.check_real(fn, "time_score", time_score)
        self.scale = _checks.check_positive(fn, "scale", scale)
        self.inner = _checks.check_bool(fn, "inner", inner)

    def forward(
        self,
        code_q: torch.Tensor,
        nl_q: torch.Tensor,
        code_k: torch.Tensor,
        nl_k: torch.Tensor,
        queues: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Four (B, D) embeddings (+ queues) -> scalar."""
        return cocosoda_loss(
            code_q,
            nl_q,
            code_k,
            nl_k,
            queues=queues,
            temperature=self.temperature,
            time_score=self.time_score,
            scale=self.scale,
            inner=self.inner,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, time_score={self.time_score}, "
            f"scale={self.scale}, inner={self.inner}"
        )
