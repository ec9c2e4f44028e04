"""CLIPN on an open_clip model (open_clip 3.x ``open_clip.model.CLIP``, a tiny random config).

posneg.ood.clipn takes pure tensors; this checks the wiring the module docstring promises on a
real open_clip model, as in xmed-lab/CLIPN@e465074 ``src/open_clip/model.py``:

- the "no" tower is a copy of the text tower; the caller computes ``token_embedding(text) +
  positional_embedding``, adds the prompt (:class:`CLIPNNoPrompt`) and runs the rest of the
  tower. With the zero-initialised prompts this reproduces ``model.encode_text`` exactly (the
  "no" tower starts as the "yes" tower, as the official ``load_state_dict`` copy does);
- :class:`CLIPNLoss` on the model's normalised features and ``logit_scale.exp()`` trains only
  the "no" side: the image tower and the "yes" text tower receive no gradient.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from _peer import peer

from posneg.ood.clipn import CLIPNLoss, CLIPNNoPrompt, CLIPNScore

open_clip_model = peer("open_clip.model")


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return open_clip_model.CLIP(
        embed_dim=8,
        vision_cfg=open_clip_model.CLIPVisionCfg(
            layers=1, width=32, head_width=16, patch_size=8, image_size=16
        ),
        text_cfg=open_clip_model.CLIPTextCfg(
            context_length=8, vocab_size=50, width=16, heads=2, layers=1
        ),
    ).eval()


def _encode_no(model, no, prompt, text, generator=None):  # type: ignore[no-untyped-def]
    x = no.token_embedding(text) + no.positional_embedding
    x = prompt(x, generator=generator)
    x = no.transformer(x, attn_mask=model.attn_mask)
    x = no.ln_final(x)
    x = x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ no.text_projection
    return F.normalize(x, dim=-1)


def _no_tower(model):  # type: ignore[no-untyped-def]
    parts = (
        "token_embedding",
        "positional_embedding",
        "transformer",
        "ln_final",
        "text_projection",
    )
    no = torch.nn.Module()
    for name in parts:
        setattr(no, name, copy.deepcopy(getattr(model, name)))
    return no


def test_zero_prompt_no_tower_equals_yes_tower() -> None:
    model = _tiny()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        text = torch.randint(1, 49, (4, 8))
    text[:, -1] = 49  # eot = argmax, as the tokenizer's
    no, prompt = _no_tower(model), CLIPNNoPrompt(context_length=8, width=16).eval()
    with torch.no_grad():
        yes = F.normalize(model.encode_text(text), dim=-1)
        torch.testing.assert_close(_encode_no(model, no, prompt, text), yes)


def test_loss_moves_only_the_no_side_and_scores_are_ood_high() -> None:
    model = _tiny().requires_grad_(False)
    no, prompt = _no_tower(model).requires_grad_(True), CLIPNNoPrompt(context_length=8, width=16)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=g)
    text = torch.randint(1, 49, (4, 8), generator=g)
    text[:, -1] = 49
    img = F.normalize(model.encode_image(images), dim=-1)
    yes = F.normalize(model.encode_text(text), dim=-1)
    t_no = _encode_no(model, no, prompt, text, generator=g)
    loss = CLIPNLoss()(img, yes, t_no, model.logit_scale.exp())
    loss.backward()
    assert prompt.prompt.grad is not None and prompt.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    s = CLIPNScore(rule="atd")(img, yes.detach(), t_no.detach())
    assert s.shape == (4,) and bool(((s >= 0) & (s <= 1)).all())
