"""A tiny transformers GPT-2 for the arithmetic task: tokenizer, pretraining (SFT), sampling.

The stand-in for an LLM in `posneg bench reasoning`: a ``GPT2LMHeadModel`` built from a tiny
``GPT2Config`` (2 layers, 64 dims, 4 heads) over a character vocabulary written here
(:class:`CharTokenizer`), pretrained by supervised fine-tuning on correct solutions of
:mod:`posneg.bench._arith` problems (prompt tokens masked), seeded, and cached under
``$POSNEG_CACHE/text`` or ``~/.cache/posneg/text`` keyed by its configuration. It exercises
the whole RAFT / resampling code path of a real causal LM (``model(input_ids,
attention_mask=..., labels=...)``); what it cannot show is anything about scale.

Sampling (:func:`sample_completions`) is written here rather than with ``generate`` so that
every draw comes from a ``torch.Generator``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posneg._io import atomic_target
from posneg.bench._arith import ArithProblems, make_problems
from posneg.text.raft import build_sft_batch, sft_step

__all__ = [
    "CharTokenizer",
    "TinyGPTConfig",
    "completion_length",
    "make_gpt",
    "pretrained_gpt",
    "sample_completions",
    "sft_on_texts",
]

#: The characters of the task (id 0 is the pad token, id 1 the end token ".").
VOCAB = "_.0123456789+-*:,="


class CharTokenizer:
    """One id per character of :data:`VOCAB`; ``_`` (id 0) pads, ``.`` (id 1) ends a completion."""

    pad_id = 0
    eos_id = 1

    def __init__(self) -> None:
        self.stoi = {c: i for i, c in enumerate(VOCAB)}

    def __len__(self) -> int:
        return len(VOCAB)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (every character must be in the vocabulary)."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"CharTokenizer.encode: unknown character {exc.args[0]!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (the pad id is dropped)."""
        return "".join(VOCAB[i] for i in ids if i != self.pad_id)


@dataclass(frozen=True)
class TinyGPTConfig:
    """The stand-in model and its pretraining.

    Attributes:
        n_ops: operations per problem.
        n_layer / n_embd / n_head: the GPT-2 size.
        steps / batch / lr: pretraining SFT steps, batch size and AdamW learning rate.
        seed: the seed of the weights, the problems and the batches.
    """

    n_ops: int = 3
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    steps: int = 300
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0


def completion_length(n_ops: int) -> int:
    """Characters of a correct completion (``"1,2,7=7."``: ``2 * n_ops + 2``)."""
    return 2 * n_ops + 2


def make_gpt(cfg: TinyGPTConfig) -> nn.Module:
    """A fresh ``GPT2LMHeadModel`` of ``cfg``'s size, initialised under ``cfg.seed``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    conf = GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=4 * cfg.n_ops + 8,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        bos_token_id=CharTokenizer.eos_id,
        eos_token_id=CharTokenizer.eos_id,
        pad_token_id=CharTokenizer.pad_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = GPT2LMHeadModel(conf)
    return model


def sft_on_texts(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    epochs: int = 1,
    batch: int = 64,
    mask_prompt: bool = True,
    generator: torch.Generator | None = None,
    tick: Callable[[], None] | None = None,
) -> float:
    """SFT of ``model`` on ``prompt + completion`` pairs (shuffled per epoch); the mean loss."""
    tok = CharTokenizer()
    p_ids = [tok.encode(p) for p in prompts]
    c_ids = [tok.encode(c) for c in completions]
    device = next(model.parameters()).device
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(p_ids), generator=generator).tolist()
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            b = build_sft_batch(
                [p_ids[i] for i in idx],
                [c_ids[i] for i in idx],
                pad_id=tok.pad_id,
                mask_prompt=mask_prompt,
            )
            losses.append(sft_step(model, optimizer, b.to(device)))
        if tick is not None:
            tick()
    return float(sum(losses) / max(len(losses), 1))


def _cache_dir() -> Path:
    root = os.environ.get("POSNEG_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "posneg"
    return base / "text"


def _key(cfg: TinyGPTConfig) -> str:
    import transformers

    blob = json.dumps({"v": 1, "tf": transformers.__version__, **asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pretrained_gpt(cfg: TinyGPTConfig = TinyGPTConfig(), *, cache: bool = True) -> nn.Module:
    """The tiny GPT-2 pretrained by SFT on ``cfg.steps`` batches of fresh problems (eval mode).

    Cached by configuration; a cached model is loaded with ``weights_only=True``.
    """
    model = make_gpt(cfg)
    path = _cache_dir() / f"tiny_gpt_{_key(cfg)}.pt"
    if cache and path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    g = torch.Generator().manual_seed(cfg.seed)
    tok = CharTokenizer()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    model.train()
    for _ in range(cfg.steps):
        probs = make_problems(cfg.batch, n_ops=cfg.n_ops, generator=g)
        b = build_sft_batch(
            [tok.encode(p) for p in probs.prompts()],
            [tok.encode(c) for c in probs.completions()],
            pad_id=tok.pad_id,
            mask_prompt=True,
        )
        sft_step(model, opt, b)
    model.eval()
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(path) as tmp:
            torch.save(model.state_dict(), tmp)
    return model


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy (the policy a run fine-tunes, leaving the pretrained one untouched)."""
    return copy.deepcopy(model)


@torch.no_grad()
def sample_completions(
    model: Any,
    problems: ArithProblems,
    *,
    num_samples: int = 1,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[str]:
    """``num_samples`` sampled completions per problem (problem-major order), cut after ``.``.

    Plain ancestral sampling at ``temperature`` (top_k 0, top_p 1 as RAFT's generation) for
    :func:`completion_length` + 2 tokens, with the KV cache; all prompts have one length.
    """
    tok = CharTokenizer()
    device = next(model.parameters()).device
    prompts = [tok.encode(p) for p in problems.prompts() for _ in range(num_samples)]
    ids = torch.tensor(prompts, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    new = []
    for _ in range(completion_length(problems.n_ops) + 2):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        new.append(nxt)
        ids = torch.cat([ids, nxt], 1)
    model.train(was_training)
    gen = torch.cat(new, 1).tolist()
    texts = []
    for row in gen:
        text = tok.decode(row)
        cut = text.find(".")
        texts.append(text[: cut + 1] if cut >= 0 else text)
    return texts
