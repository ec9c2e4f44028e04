"""`posneg bench ood` runners of CLIPN (CTW, ATD) and the plain zero-shot MSP of the same model.

CLIPN needs a CLIP-style model, not the bench's classifier: each run trains the small two-tower
model of :mod:`posneg.bench._two_tower` contrastively on the in-distribution training digits with
the captions "a photo of the digit k" (its "CLIP pretraining"), then freezes it and trains
CLIPN's "no" text tower (a copy of the text tower) and 16 learnable "no" prompts (zero init,
added to the token + position embeddings) with ``0.5 (L_yes + L_no + L_tso)``
(:func:`posneg.ood.clipn.clipn_loss`). Inference follows the official code: class heads from
the (single) template, the model's ``tau`` on both heads, CTW and ATD as ``1 - score``
(higher = more OOD); ``clip_msp`` is ``-max softmax`` of the "yes" logits (MCM-style zero-shot
MSP).

Batches for the ITBO loss hold one image per class (``G`` groups of ``C`` pairs per step, the
loss averaged over groups): every other caption in a CLIPN batch is a "no" target, and with only
``C`` distinct captions a random batch would label identical (image class, caption) pairs both
"yes" and "no" (the card's subtle point 2). The three runners share one trained model per
``(context, seed)``: the training draws come from ``ctx.seed``, not from the runner's generator.

What a real CLIP run changes: pretrained ViT and text transformer towers (here MLPs trained in
seconds), 128 templates, CC3M captions with batch 2048, AdamW lr 3e-4 for 10 epochs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench._ood_context import OODContext, Runner
from posneg.bench._two_tower import TwoTower, pretrain
from posneg.ood.baselines import msp_score
from posneg.ood.clipn import CLIPNNoPrompt, atd_score, clipn_loss, ctw_score, merge_templates

__all__ = ["RUNNERS", "NoTextTower", "caption_tokens", "train_clipn"]

WORDS = ("a", "photo", "of", "the", "digit")
MAX_LEN = 8
PRETRAIN_EPOCHS = 30
CLIPN_STEPS = 100
GROUPS = 8


def caption_tokens(classes: torch.Tensor) -> torch.Tensor:
    """Token ids of "a photo of the digit k" for each class ``k``: ``(N,) -> (N, MAX_LEN)``."""
    head = torch.arange(1, len(WORDS) + 1).expand(classes.shape[0], -1)
    digit = (classes.long().cpu() + len(WORDS) + 1)[:, None]
    pad = torch.zeros(classes.shape[0], MAX_LEN - len(WORDS) - 1, dtype=torch.long)
    return torch.cat([head, digit, pad], dim=1)


class NoTextTower(nn.Module):
    """CLIPN's "no" text tower for :class:`TwoTower`: copies of its text weights plus prompts.

    ``encode_text(tokens, generator=)`` mirrors ``TwoTower.encode_text`` with the prompt added to
    the token + position embeddings (a draw per caption in training, the mean in eval).
    """

    def __init__(self, model: TwoTower, num_prompts: int = 16) -> None:
        super().__init__()
        self.token = copy.deepcopy(model.token)
        self.position = nn.Parameter(model.position.detach().clone())
        self.token_mlp = copy.deepcopy(model.token_mlp)
        self.text_head = copy.deepcopy(model.text_head)
        width = model.position.shape[1]
        self.prompt = CLIPNNoPrompt(context_length=MAX_LEN, width=width, num_prompts=num_prompts)

    def encode_text(
        self, tokens: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        emb = self.token(tokens) + self.position[: tokens.shape[1]]
        h = self.token_mlp(self.prompt(emb, generator=generator))
        mask = (tokens != 0).to(h.dtype)[..., None]
        pooled = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return F.normalize(self.text_head(pooled), dim=-1)


def _one_per_class(y: torch.Tensor, classes: int, groups: int, g: torch.Generator) -> torch.Tensor:
    """``(groups, classes)`` indices: a random image of each class in each group."""
    out = torch.empty(groups, classes, dtype=torch.long)
    for c in range(classes):
        pool = torch.nonzero(y == c).flatten()
        out[:, c] = pool[torch.randint(0, len(pool), (groups,), generator=g)]
    return out


def train_clipn(
    x: torch.Tensor,
    y: torch.Tensor,
    classes: int,
    *,
    seed: int,
    pretrain_epochs: int = PRETRAIN_EPOCHS,
    steps: int = CLIPN_STEPS,
) -> tuple[TwoTower, NoTextTower]:
    """Pretrain the two-tower model on (digit, caption) pairs, then CLIPN on top of it, frozen."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # parameter init of the towers
        model = TwoTower(image_features=x[0].numel(), vocab_size=len(WORDS) + 11, max_len=MAX_LEN)
    x, y = x.detach().cpu().float(), y.detach().cpu()
    pretrain(
        model, x, caption_tokens(y), epochs=pretrain_epochs, batch_size=64, lr=2e-3, generator=g
    )
    model.eval().requires_grad_(False)  # image tower, yes text tower, logit scale: frozen
    no = NoTextTower(model).requires_grad_(True)
    opt = torch.optim.AdamW(no.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    tokens = caption_tokens(torch.arange(classes))
    with torch.no_grad():
        yes_text = model.encode_text(tokens)
    for _ in range(steps):
        idx = _one_per_class(y, classes, GROUPS, g)
        img = model.encode_image(x[idx.flatten()]).reshape(GROUPS, classes, -1)
        no_text = no.encode_text(tokens.repeat(GROUPS, 1), generator=g).reshape(GROUPS, classes, -1)
        loss = torch.stack(
            [
                clipn_loss(
                    image_features=img[k],
                    text_features=yes_text,
                    text_features_no=no_text[k],
                    logit_scale=model.logit_scale.exp(),
                )
                for k in range(GROUPS)
            ]
        ).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, no.eval()


_CACHE: dict[tuple[int, int], dict[str, dict[str, torch.Tensor]]] = {}


def _scores(ctx: OODContext) -> dict[str, dict[str, torch.Tensor]]:
    key = (id(ctx), ctx.seed)
    if key not in _CACHE:
        _CACHE.clear()  # keep one context's scores only
        model, no = train_clipn(
            ctx.train_x,
            ctx.train_y,
            ctx.num_classes,
            seed=ctx.seed,
            pretrain_epochs=PRETRAIN_EPOCHS,
            steps=CLIPN_STEPS,
        )
        tokens = caption_tokens(torch.arange(ctx.num_classes))
        out: dict[str, dict[str, torch.Tensor]] = {"clipn_ctw": {}, "clipn_atd": {}, "clip_msp": {}}
        with torch.no_grad():
            w = merge_templates(model.encode_text(tokens)[None])
            w_no = merge_templates(no.encode_text(tokens)[None])
            tau = float(model.logit_scale.exp())
            for name, x in ctx.eval_sets.items():
                i = model.encode_image(x.detach().cpu().float())
                kw = {"image_features": i, "text_features": w, "text_features_no": w_no}
                out["clipn_ctw"][name] = ctw_score(**kw, logit_scale=tau).to(x.device)
                out["clipn_atd"][name] = atd_score(**kw, logit_scale=tau).to(x.device)
                out["clip_msp"][name] = msp_score(tau * i @ w.T).to(x.device)
        _CACHE[key] = out
    return _CACHE[key]


def _runner(name: str) -> Runner:
    def run(ctx: OODContext, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return dict(_scores(ctx)[name])

    return run


RUNNERS: dict[str, Runner] = {
    name: _runner(name) for name in ("clipn_ctw", "clipn_atd", "clip_msp")
}
