"""RAFT: reward-ranked fine-tuning (best-of-K or global top-fraction selection, then SFT).

Dong, Xiong, Goyal, Zhang, Chow, Pan, Diao, Zhang, Shum, Zhang, "RAFT: Reward rAnked FineTuning
for Generative Foundation Model Alignment", TMLR 2023, arXiv 2304.06767. Official code:
OptimalScale/LMFlow, ``src/lmflow/pipeline/raft_aligner.py`` (the ``collection_strategy``
version; read at 5047f2f and in later snapshots): ``_get_batch_dataset_local``,
``_get_batch_dataset_top``, ``_load_dataset`` (``group_texts``) and ``align``.

Each iteration samples responses from the current policy, scores them with a reward, keeps the
best and fine-tunes on the kept ``prompt + response`` texts:

- ``"local"`` (best-of-K): ``K = int(1 / top_fraction)`` samples per prompt; keep
  ``argmax_k r[m, k]`` (ties: the first index, as ``np.argmax``). Discarded samples (LMFlow's
  ``_discard_sample``) get reward ``-INF``; a prompt whose samples were all discarded keeps
  nothing. The logged reward is that of sample 0 (an unbiased estimate of the policy's mean).
- ``"top"`` (global): one sample per prompt; keep the ``int(n * top_fraction)`` largest rewards
  over all ``n`` samples, in the order of ``np.argsort(r)[::-1]`` (descending; among equal
  rewards the later index first: numpy's sort of a small array is stable and the order is then
  reversed; posneg uses a stable sort always, so the order is defined for every size).

The SFT data of the official version tokenizes ``prompt + response`` and either packs the texts
into blocks (:func:`pack_texts`, ``group_texts`` with ``labels = input_ids``: the loss covers the
prompt) or, with ``disable_group_texts``, keeps one text per row. Later forks mask the prompt with
``-100``; :func:`build_sft_batch` offers both (``mask_prompt``; default ``False`` as the
official version). :func:`sft_step` is one optimiser step of any transformers causal LM
(``model(input_ids=..., attention_mask=..., labels=...).loss``). :func:`raft_iteration` runs one
iteration with user callables (generation, reward, training), so the same code drives a real
LLM; the tests and bench use a tiny GPT-2 (:mod:`posneg.bench._tiny_gpt`).

Example:
    >>> import torch
    >>> sel = select_best_of_k(torch.tensor([[0.1, 0.9, 0.9], [0.5, 0.2, 0.0]]))
    >>> sel.prompt.tolist(), sel.sample.tolist()
    ([0, 1], [1, 0])
    >>> select_top_fraction(torch.tensor([0.3, 0.9, 0.1, 0.9]), top_fraction=0.5).tolist()
    [3, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import torch
from torch import nn

from posneg._checks import check_bool, check_choice, check_int, check_range, check_tensor

__all__ = [
    "CITATION",
    "DISCARDED_REWARD",
    "IGNORE_INDEX",
    "RAFTSelector",
    "RaftIterationResult",
    "RaftSelection",
    "SFTBatch",
    "build_sft_batch",
    "pack_texts",
    "raft_iteration",
    "samples_per_prompt",
    "select_best_of_k",
    "select_top_fraction",
    "sft_step",
]

CITATION = """@article{dong2023raft,
  title={{RAFT}: Reward rAnked FineTuning for Generative Foundation Model Alignment},
  author={Dong, Hanze and Xiong, Wei and Goyal, Deepanshu and Zhang, Yihan and Chow, Winnie
          and Pan, Rui and Diao, Shizhe and Zhang, Jipeng and Shum, Kashun and Zhang, Tong},
  journal={Transactions on Machine Learning Research},
  year={2023},
  note={arXiv:2304.06767}
}"""

#: LMFlow's reward of a discarded sample (``-self.INF``, ``INF = 888888888``).
DISCARDED_REWARD = -888888888.0
#: The label id the loss ignores (transformers' convention).
IGNORE_INDEX = -100
STRATEGIES = ("local", "top")


class RaftSelection(NamedTuple):
    """The kept samples: ``rewards[prompt[i], sample[i]]`` for each ``i`` (int64 tensors)."""

    prompt: torch.Tensor
    sample: torch.Tensor


def samples_per_prompt(top_fraction: float) -> int:
    """``K = int(1 / top_fraction)``: the samples per prompt of ``"local"`` (LMFlow's ``align``)."""
    a = check_range("samples_per_prompt", "top_fraction", top_fraction, 0.0, 1.0, low_open=True)
    return int(1 / a)


def _check_rewards(fn: str, rewards: Any, ndim: int) -> torch.Tensor:
    r = check_tensor(fn, "rewards", rewards)
    if not r.is_floating_point():
        raise TypeError(f"{fn}: rewards must be a floating tensor; got {r.dtype}")
    if r.dim() != ndim or r.numel() == 0:
        want = "(M, K)" if ndim == 2 else "(N,)"
        raise ValueError(f"{fn}: rewards must be a non-empty {want} tensor; got {tuple(r.shape)}")
    if torch.isnan(r).any():
        raise ValueError(f"{fn}: rewards contain NaN")
    return r


def select_best_of_k(
    rewards: torch.Tensor, *, discarded: torch.Tensor | None = None
) -> RaftSelection:
    """RAFT ``"local"``: the best of the K samples of every prompt.

    Args:
        rewards: ``(M, K)`` rewards of K samples for each of M prompts.
        discarded: optional ``(M, K)`` bool, samples to drop (LMFlow gives them
            :data:`DISCARDED_REWARD`); a prompt with every sample discarded keeps nothing.

    Returns:
        :class:`RaftSelection`: one ``(prompt, sample)`` per kept prompt, prompts ascending; the
        sample is the first index of the row's maximum (``np.argmax``).

    Raises:
        ValueError / TypeError: on a bad shape, dtype or NaN.
    """
    fn = "select_best_of_k"
    r = _check_rewards(fn, rewards, 2)
    if discarded is not None:
        d = check_tensor(fn, "discarded", discarded)
        if d.dtype != torch.bool or d.shape != r.shape:
            raise ValueError(
                f"{fn}: discarded must be a bool tensor of shape {tuple(r.shape)}; "
                f"got {d.dtype} {tuple(d.shape)}"
            )
        r = r.masked_fill(d.to(r.device), float("-inf"))
        keep = ~d.to(r.device).all(1)
    else:
        keep = torch.ones(r.shape[0], dtype=torch.bool, device=r.device)
    best = r.argmax(1)
    prompt = torch.nonzero(keep).flatten()
    return RaftSelection(prompt, best[prompt])


def select_top_fraction(rewards: torch.Tensor, *, top_fraction: float) -> torch.Tensor:
    """RAFT ``"top"``: indices of the ``int(N * top_fraction)`` largest rewards, descending.

    Args:
        rewards: ``(N,)`` one reward per sample (one sample per prompt in RAFT).
        top_fraction: ``alpha`` in ``(0, 1]``.

    Returns:
        ``(int(N * alpha),)`` int64 indices in the order of ``np.argsort(r)[::-1]`` with a stable
        sort (equal rewards: the later index first).
    """
    fn = "select_top_fraction"
    r = _check_rewards(fn, rewards, 1)
    a = check_range(fn, "top_fraction", top_fraction, 0.0, 1.0, low_open=True)
    n_keep = int(r.shape[0] * a)
    order = torch.sort(r, stable=True).indices.flip(0)
    return order[:n_keep]


class RAFTSelector(nn.Module):
    """RAFT's selection rule as a module: see :func:`select_best_of_k`, :func:`select_top_fraction`.

    ``forward(rewards (M, K), discarded=None) -> RaftSelection``. ``"local"``: best of each row.
    ``"top"``: the global top ``int(M * K * top_fraction)`` of all samples (RAFT's own case is
    ``K = 1``); ``discarded`` samples are dropped before ranking (the official ``"top"`` has no
    discard step, so leave it ``None`` to match it).

    Example:
        >>> import torch
        >>> RAFTSelector("top", top_fraction=0.5)(torch.tensor([[0.2], [0.7]])).prompt.tolist()
        [1]
    """

    def __init__(self, strategy: str = "local", *, top_fraction: float = 0.125) -> None:
        super().__init__()
        self.strategy = check_choice("RAFTSelector", "strategy", strategy, STRATEGIES)
        self.top_fraction = check_range(
            "RAFTSelector", "top_fraction", top_fraction, 0.0, 1.0, low_open=True
        )

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}, top_fraction={self.top_fraction}"

    @property
    def samples_per_prompt(self) -> int:
        """K for ``"local"`` (``int(1 / top_fraction)``); 1 for ``"top"``."""
        return samples_per_prompt(self.top_fraction) if self.strategy == "local" else 1

    def forward(
        self, rewards: torch.Tensor, discarded: torch.Tensor | None = None
    ) -> RaftSelection:
        if self.strategy == "local":
            return select_best_of_k(rewards, discarded=discarded)
        r = _check_rewards("RAFTSelector", rewards, 2)
        flat = r.reshape(-1)
        alive = torch.arange(flat.shape[0], device=r.device)
        if discarded is not None:
            alive = torch.nonzero(~discarded.reshape(-1).to(r.device)).flatten()
        if alive.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=r.device)
            return RaftSelection(empty, empty)
        n_keep = int(flat.shape[0] * self.top_fraction)
        order = torch.sort(flat[alive], stable=True).indices.flip(0)[:n_keep]
        idx = alive[order]
        return RaftSelection(idx // r.shape[1], idx % r.shape[1])


# --------------------------------------------------------------------------------------------
# SFT on the kept samples
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SFTBatch:
    """A right-padded causal-LM batch: ``input_ids``, ``attention_mask``, ``labels`` ``(B, T)``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device | str) -> SFTBatch:
        """The batch on ``device``."""
        return SFTBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device)
        )


def build_sft_batch(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    mask_prompt: bool = False,
) -> SFTBatch:
    """One text per row (LMFlow's ``disable_group_texts``): ``prompt + response``, right-padded.

    Args:
        prompt_ids: token ids of each prompt.
        response_ids: token ids of each response (same count).
        pad_id: the padding id (attention 0, label ``-100``).
        mask_prompt: label the prompt tokens ``-100`` (later LMFlow forks); ``False``: the loss
            covers the prompt too (``labels = input_ids``, the official version).

    Returns:
        :class:`SFTBatch`; transformers' causal LMs shift the labels inside.
    """
    fn = "build_sft_batch"
    if len(prompt_ids) != len(response_ids) or len(prompt_ids) == 0:
        raise ValueError(
            f"{fn}: prompt_ids and response_ids must be non-empty and of one length; "
            f"got {len(prompt_ids)} and {len(response_ids)}"
        )
    check_int(fn, "pad_id", pad_id)
    check_bool(fn, "mask_prompt", mask_prompt)
    rows = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids, strict=True)]
    width = max(len(x) for x in rows)
    if width == 0:
        raise ValueError(f"{fn}: every text is empty")
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, p) in enumerate(zip(rows, prompt_ids, strict=True)):
        n = len(row)
        ids[i, :n] = torch.tensor(row, dtype=torch.long)
        att[i, :n] = 1
        labels[i, :n] = ids[i, :n]
        if mask_prompt:
            labels[i, : len(p)] = IGNORE_INDEX
    return SFTBatch(ids, att, labels)


def pack_texts(token_lists: Sequence[Sequence[int]], *, block_size: int) -> list[list[int]]:
    """LMFlow's ``group_texts``: concatenate every text and cut into ``block_size`` chunks.

    The remainder is dropped when the total is at least ``block_size`` (else the one short
    chunk is kept, as the official code). Labels are the chunks themselves
    (``labels = input_ids``), so the loss covers prompts and crosses text boundaries.
    """
    bs = check_int("pack_texts", "block_size", block_size, min_value=1)
    flat = [int(t) for x in token_lists for t in x]
    total = len(flat)
    if total >= bs:
        total = (total // bs) * bs
    return [flat[i : i + bs] for i in range(0, total, bs)]


def sft_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: SFTBatch) -> float:
    """One optimiser step of a transformers causal LM on ``batch``; returns the loss.

    ``model(input_ids=..., attention_mask=..., labels=...).loss`` (mean over unmasked tokens).
    """
    model.train()
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels)
    loss = out.loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


# --------------------------------------------------------------------------------------------
# one iteration
# --------------------------------------------------------------------------------------------

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class RaftIterationResult(Generic[P, R]):
    """What one RAFT iteration did.

    Attributes:
        policy_reward: the mean reward of sample 0 of every prompt (RAFT's logged reward).
        batch_reward: the mean reward of every sample drawn.
        kept_reward: the mean reward of the kept samples (NaN when none was kept).
        kept_prompts / kept_responses: the SFT data.
        train_loss: what ``train`` returned (NaN when nothing was kept).
    """

    policy_reward: float
    batch_reward: float
    kept_reward: float
    kept_prompts: list[P]
    kept_responses: list[R]
    train_loss: float


def raft_iteration(
    prompts: Sequence[P],
    *,
    generate: Callable[[Sequence[P], int], Sequence[R]],
    reward: Callable[[Sequence[P], Sequence[R]], torch.Tensor],
    train: Callable[[list[P], list[R]], float],
    selector: RAFTSelector,
    discard: Callable[[P, R], bool] | None = None,
) -> RaftIterationResult[P, R]:
    """One RAFT iteration: sample, score, select with ``selector``, fine-tune on the kept pairs.

    Args:
        prompts: this iteration's M prompts (RAFT walks a shuffled prompt set in disjoint slices).
        generate: ``generate(prompts, K)``: ``M * K`` responses, prompt-major, from the current
            policy (bind your ``generator=`` in the closure).
        reward: ``reward(repeated_prompts, responses)``: ``(M * K,)`` rewards.
        train: ``train(prompts, responses)``: fine-tunes the policy, returns a loss.
        selector: :class:`RAFTSelector` (``"local"``: K = ``int(1/top_fraction)``; ``"top"``:
            K = 1).
        discard: optional ``discard(prompt, response) -> bool``: samples to drop (LMFlow's
            ``_discard_sample`` looks at the response only; a verifier may need the prompt).
    """
    if len(prompts) == 0:
        raise ValueError("raft_iteration: prompts must not be empty")
    if not isinstance(selector, RAFTSelector):
        raise TypeError(
            f"raft_iteration: selector must be a RAFTSelector; got {type(selector).__name__}"
        )
    k = selector.samples_per_prompt
    responses = list(generate(prompts, k))
    m = len(prompts)
    if len(responses) != m * k:
        raise ValueError(
            f"raft_iteration: generate returned {len(responses)} responses; expected {m * k}"
        )
    rep = [p for p in prompts for _ in range(k)]
    r = torch.as_tensor(reward(rep, responses), dtype=torch.float64).reshape(m, k)
    disc = None
    if discard is not None:
        disc = torch.tensor(
            [discard(p, x) for p, x in zip(rep, responses, strict=True)], dtype=torch.bool
        ).reshape(m, k)
    sel = selector(r, disc)
    kp = [prompts[i] for i in sel.prompt.tolist()]
    kr = [
        responses[i * k + j] for i, j in zip(sel.prompt.tolist(), sel.sample.tolist(), strict=True)
    ]
    kept = r[sel.prompt, sel.sample]
    loss = float(train(kp, kr)) if kp else float("nan")
    return RaftIterationResult(
        policy_reward=float(r[:, 0].mean()),
        batch_reward=float(r.mean()),
        kept_reward=float(kept.mean()) if kept.numel() else float("nan"),
        kept_prompts=kp,
        kept_responses=kr,
        train_loss=loss,
    )
