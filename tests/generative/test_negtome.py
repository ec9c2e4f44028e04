"""NegToMe (posneg.generative.negtome) against its formula and the official code's behaviour.

Reference: ``1jsingh/negtome`` at commit bdcbb83c39cdfa903268a06d5f244ceea23963cb,
``src/negtome/pipeline_negtome_sdxl.py``: ``negtome()`` (cosine of every frame's tokens with frame
0's, ``torch.max(dim=-2)``, threshold, dropout, ``(1+α)x − α·x_0[argmax]``) and
``NegToMeAttnProcessor2_0.__call__`` (after to_out/residual/rescale; block-name prefix, min H/W,
timestep window, CFG halves). The transcription below is written from reading that code.
Also: a tiny randomly initialised diffusers ``UNet2DConditionModel`` + ``DDIMScheduler`` loop
running Perp-Neg guidance and the NegToMe processor unchanged.
"""

from __future__ import annotations

import pytest
import torch

from posneg.generative.negtome import (
    NegToMe,
    NegToMeAttnProcessor,
    apply_negtome,
    negtome,
    negtome_active,
    set_negtome_timestep,
)
from posneg.generative.perp_neg import guidance


def _r(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _code_negtome(
    x: torch.Tensor, alpha: float, thr: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Loop transcription of the official ``negtome`` (dropout 0)."""
    f, n, _ = x.shape
    xn = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = x.clone()
    for fr in range(f):
        cos = xn[fr] @ xn[0].T  # [i, j]
        if mask is not None:
            cos = cos.masked_fill(~mask[None, :], float("-inf"))
        for j in range(n):
            i_star = int(cos[:, j].argmax())
            if cos[i_star, j] > thr:
                out[fr, j] = (1 + alpha) * x[fr, j] - alpha * x[0, i_star]
    return out


def _paper_negtome(
    x: torch.Tensor, alpha: float, thr: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    f, n, _ = x.shape
    xn = x / x.norm(dim=-1, keepdim=True)
    out = x.clone()
    for fr in range(f):
        for i in range(n):
            sims = [
                float(xn[fr, i] @ xn[0, j]) if mask is None or mask[j] else float("-inf")
                for j in range(n)
            ]
            j_star = max(range(n), key=lambda j: sims[j])
            if sims[j_star] > thr:
                out[fr, i] = (1 + alpha) * x[fr, i] - alpha * x[0, j_star]
    return out


def test_code_axis_matches_transcription() -> None:
    x = _r(4, 12, 6, seed=1)
    torch.testing.assert_close(negtome(x, alpha=0.9, threshold=0.2), _code_negtome(x, 0.9, 0.2))


def test_paper_axis_matches_loop() -> None:
    x = _r(4, 12, 6, seed=2)
    torch.testing.assert_close(
        negtome(x, alpha=0.7, threshold=0.1, match_axis="paper"), _paper_negtome(x, 0.7, 0.1)
    )


def test_code_and_paper_axes_differ_but_agree_on_a_copy_of_frame0() -> None:
    x = _r(3, 16, 8, seed=3)
    code, paper = negtome(x, threshold=0.2), negtome(x, threshold=0.2, match_axis="paper")
    assert not torch.allclose(code, paper)
    same = x[0:1].repeat(3, 1, 1)
    for axis in ("code", "paper"):
        torch.testing.assert_close(negtome(same, match_axis=axis), same)  # type: ignore[arg-type]


def test_masked_mode_code_and_paper() -> None:
    x = _r(3, 10, 5, seed=4)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[:4] = True
    code = negtome(x, threshold=-2.0, mask=mask)
    torch.testing.assert_close(code, _code_negtome(x, 0.9, -2.0, mask))
    torch.testing.assert_close(code[:, 4:], x[:, 4:])  # code: masked positions are never merged
    paper = negtome(x, threshold=-2.0, mask=mask, match_axis="paper")
    torch.testing.assert_close(paper, _paper_negtome(x, 0.9, -2.0, mask))
    # paper: every token merged with an in-mask reference token only
    sub = (1.9 * x - paper) / 0.9
    for fr in range(3):
        for i in range(10):
            assert any(torch.allclose(sub[fr, i], x[0, j]) for j in range(4))


def test_identity_cases_and_reference_frame() -> None:
    x = _r(4, 9, 5, seed=5)
    torch.testing.assert_close(negtome(x, alpha=0.0, threshold=-1.0), x)
    torch.testing.assert_close(negtome(x, threshold=1.01), x)
    torch.testing.assert_close(negtome(x, threshold=-2.0, dropout=1.0), x)
    torch.testing.assert_close(negtome(x, threshold=-2.0)[0], x[0])


def test_dropout_uses_generator_and_norms_can_grow() -> None:
    x = _r(4, 32, 5, seed=6)
    a = negtome(x, threshold=-2.0, dropout=0.5, generator=torch.Generator().manual_seed(1))
    b = negtome(x, threshold=-2.0, dropout=0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    state = torch.get_rng_state()
    negtome(x, threshold=-2.0, dropout=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(state, torch.get_rng_state())
    full = negtome(x, threshold=-2.0)
    assert (full[1:].norm(dim=-1) > x[1:].norm(dim=-1) + 1e-9).any()


def test_timestep_window() -> None:
    assert negtome_active(900) and negtome_active(800) and negtome_active(1000)
    assert not negtome_active(799) and not negtome_active(torch.tensor(10))


def test_half_precision_finite() -> None:
    x = _r(3, 8, 4, seed=7).half()
    y = negtome(x, threshold=0.0)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()


def test_module_repr_and_call() -> None:
    m = NegToMe(alpha=0.5, threshold=0.3, match_axis="paper")
    x = _r(2, 6, 3, seed=8)
    torch.testing.assert_close(m(x), negtome(x, alpha=0.5, threshold=0.3, match_axis="paper"))
    assert "alpha=0.5" in repr(m) and "match_axis='paper'" in repr(m)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"negtome: hidden_states must have shape \(F, N, D\)"):
        negtome(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="negtome: match_axis must be one of"):
        negtome(torch.zeros(2, 3, 4), match_axis="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"negtome: dropout must be in \[0.0, 1.0\]"):
        negtome(torch.zeros(2, 3, 4), dropout=1.5)
    with pytest.raises(ValueError, match=r"negtome: mask must be a \(3,\) bool tensor"):
        negtome(torch.zeros(2, 3, 4), mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"negtome: hidden_states must be a torch\.Tensor"):
        negtome([1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="NegToMeAttnProcessor: merger must be a NegToMe"):
        NegToMeAttnProcessor("up_blocks.0", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="apply_negtome: model must be a diffusers model"):
        apply_negtome(object(), NegToMe())
    pytest.importorskip("diffusers")
    with pytest.raises(ValueError, match="apply_negtome: model has no diffusers Attention layers"):
        apply_negtome(torch.nn.Linear(2, 2), NegToMe())


# --- on a real diffusers UNet2DConditionModel + scheduler loop ---------------------------------


def _tiny_unet() -> torch.nn.Module:
    diffusers = pytest.importorskip("diffusers")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return diffusers.UNet2DConditionModel(
            sample_size=16,
            in_channels=2,
            out_channels=2,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=8,
            attention_head_dim=4,
            norm_num_groups=4,
        ).eval()


def test_processor_on_unet2dcondition_keeps_each_cfg_chunks_frame0() -> None:
    unet = _tiny_unet()
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(6, 2, 16, 16, generator=g), torch.randn(6, 3, 8, generator=g)
    with torch.no_grad():
        plain = unet(x, 900, encoder_hidden_states=text).sample
        procs = apply_negtome(unet, NegToMe(alpha=0.9, threshold=0.0), min_attn_dim=8, cfg_chunks=2)
        assert any(p.name.startswith("up_blocks") for p in procs)
        set_negtome_timestep(procs, None)
        torch.testing.assert_close(unet(x, 900, encoder_hidden_states=text).sample, plain)
        set_negtome_timestep(procs, 900)
        merged = unet(x, 900, encoder_hidden_states=text).sample
        set_negtome_timestep(procs, 500)  # outside the window
        torch.testing.assert_close(
            unet(x, 500, encoder_hidden_states=text).sample, unet_plain(unet, x, 500, text)
        )
    torch.testing.assert_close(merged[[0, 3]], plain[[0, 3]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(merged[[1, 2, 4, 5]], plain[[1, 2, 4, 5]])


def unet_plain(unet: torch.nn.Module, x: torch.Tensor, t: int, text: torch.Tensor) -> torch.Tensor:
    from diffusers.models.attention_processor import AttnProcessor2_0

    procs = {n: p for n, p in unet.attn_processors.items()}  # type: ignore[operator]
    unet.set_attn_processor(AttnProcessor2_0())  # type: ignore[operator]
    out = unet(x, t, encoder_hidden_states=text).sample
    unet.set_attn_processor(procs)  # type: ignore[operator]
    return out


def test_guidance_and_negtome_in_a_ddim_loop() -> None:
    diffusers = pytest.importorskip("diffusers")
    unet = _tiny_unet()
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(4)
    g = torch.Generator().manual_seed(1)
    b = 2
    uncond, pos, neg = (torch.randn(1, 3, 8, generator=g).expand(b, 3, 8) for _ in range(3))
    procs = apply_negtome(unet, NegToMe(), min_attn_dim=8, cfg_chunks=3, t_end=700)
    x = torch.randn(b, 2, 16, 16, generator=g)
    with torch.no_grad():
        for t in sched.timesteps:
            set_negtome_timestep(procs, t)
            eps = unet(
                torch.cat([x] * 3), t, encoder_hidden_states=torch.cat([uncond, pos, neg])
            ).sample
            eu, ep, en = eps.chunk(3)
            out = guidance(eu, ep, en[None], method="perp_neg", guidance_scale=7.5, neg_weights=1.5)
            assert out.shape == x.shape
            x = sched.step(out, t, x).prev_sample
    assert torch.isfinite(x).all()
