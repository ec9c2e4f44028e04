"""Part 1 of `posneg bench image-text`: DeGLA vs NegCLIP vs plain CLIP fine-tuning.

One tiny two-tower model (:mod:`posneg.bench._two_tower`) is pretrained contrastively on the
train split of the composed two-digit images with web-style captions that name both digits
in a random order (``"a b"``/``"b a"``) plus single-digit images with the prompt ``"d"``: it
learns the digits but not the relation (swap accuracy near chance). From that same pretrained
state each method fine-tunes on the relation captions ``"a left b"`` only:

- ``clip``: the symmetric CLIP loss, no negatives;
- ``negclip``: :func:`posneg.losses.degla.degla_loss` with IGC, TGC and distillation weights 0
  (the NegCLIP global term over [positives; 4 negatives per sample]);
- ``degla``: the full DeGLA loss (weights 1, 0.1, 0.1, 0.005) with an EMA teacher initialised
  from the pretrained model and updated with decay 0.9996 after every step.

Scored on held-out digit images: swap accuracy (the image is closer to ``"a left b"`` than to
``"b left a"``), all-negatives accuracy (closer to the caption than to each of its 4 negatives)
and retention: zero-shot accuracy of single-digit images against the 10 prompts ``"0"``..``"9"``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, cast

import torch

from posneg.bench._two_tower import TwoTower, clip_loss, pretrain
from posneg.data.composed import VOCAB, ComposedDigits, digit_prompts
from posneg.losses.degla import DeGLAOutput, degla_loss, ema_update_

__all__ = ["METHODS", "evaluate", "run_seed"]

METHODS: tuple[str, ...] = ("pretrained", "clip", "negclip", "degla")
METRICS: tuple[str, ...] = ("swap_accuracy", "all_negatives_accuracy", "retention_accuracy")


@torch.no_grad()
def evaluate(model: TwoTower, test: ComposedDigits) -> dict[str, float]:
    """Swap accuracy, all-negatives accuracy and zero-shot single-digit accuracy."""
    model.eval()
    img = model.encode_image(test.images)
    pos = (img * model.encode_text(test.captions)).sum(1)
    negs = model.encode_text(test.negatives).reshape(img.shape[0], 4, -1)
    neg = torch.einsum("bd,bkd->bk", img, negs)
    single = model.encode_image(test.single_images) @ model.encode_text(digit_prompts()).T
    model.train()
    return {
        "swap_accuracy": float((pos > neg[:, 0]).double().mean()),
        "all_negatives_accuracy": float((pos[:, None] > neg).all(1).double().mean()),
        "retention_accuracy": float((single.argmax(1) == test.single_labels).double().mean()),
    }


def _fine_tune(
    model: TwoTower,
    method: str,
    train: ComposedDigits,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> list[float]:
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 10_000)
    n = train.images.shape[0]
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for s in range(0, n - 1, batch_size):
            idx = perm[s : s + batch_size]
            if len(idx) < 2:
                continue
            if method == "clip":
                img, txt, scale = model(train.images[idx], train.captions[idx])
                loss = clip_loss(img, txt, scale)
            else:
                rows = (idx[:, None] * 4 + torch.arange(4)).flatten()  # sample-major negatives
                tokens = torch.cat([train.captions[idx], train.negatives[rows]])
                img, txt, scale = model(train.images[idx], tokens)
                with torch.no_grad():
                    t_img, t_txt, _ = teacher(train.images[idx], tokens)
                off = {"igc_weight": 0.0, "tgc_weight": 0.0, "distill_weight": 0.0}
                out = degla_loss(
                    img,
                    txt[: len(idx)],
                    txt[len(idx) :],
                    teacher_image=t_img,
                    teacher_text=t_txt,
                    logit_scale=scale,
                    return_parts=True,
                    **(off if method == "negclip" else {}),  # type: ignore[arg-type]
                )
                loss = cast(DeGLAOutput, out).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            if method == "degla":
                ema_update_(teacher, model, decay=0.9996)
            total += float(loss.detach())
        losses.append(total)
    return losses


def run_seed(
    seed: int,
    train: ComposedDigits,
    test: ComposedDigits,
    hp: dict[str, Any],
    tick: Callable[[], None],
) -> list[dict[str, Any]]:
    """Pretrain once under ``seed``, fine-tune each method from that state; one row per method."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoTower(image_features=128, vocab_size=len(VOCAB), dim=hp["dim"])
    labels = digit_prompts()[train.single_labels]
    pretrain(
        model,
        torch.cat([train.images, train.single_images]),
        torch.cat([train.unordered_captions, labels]),
        epochs=hp["pretrain_epochs"],
        batch_size=hp["batch_size"],
        lr=hp["pretrain_lr"],
        generator=torch.Generator().manual_seed(seed),
    )
    tick()
    state = copy.deepcopy(model.state_dict())
    rows = [{"part": "degla", "method": "pretrained", "seed": seed, **evaluate(model, test)}]
    for method in METHODS[1:]:
        model.load_state_dict(state)
        losses = _fine_tune(
            model,
            method,
            train,
            epochs=hp["finetune_epochs"],
            batch_size=hp["batch_size"],
            lr=hp["finetune_lr"],
            seed=seed,
        )
        rows.append(
            {
                "part": "degla",
                "method": method,
                "seed": seed,
                **evaluate(model, test),
                "final_loss": losses[-1] if losses else math.nan,
            }
        )
        tick()
    return rows
