"""NegToMe and Perp-Neg inside diffusers' own ``StableDiffusionPipeline.__call__`` (issue 17).

A randomly initialised small ``UNet2DConditionModel`` (cross-attention to 8-d "text" tokens,
self-attention at 8x8 latents), a tiny ``AutoencoderKL`` and a ``DDIMScheduler`` are put in a
``StableDiffusionPipeline``; prompts are given as ``prompt_embeds`` / ``negative_prompt_embeds``
(no text encoder, no tokenizer, nothing downloaded). What is exercised is the pipeline's own
loop: its CFG batch ``[negative; prompt]``, its calls ``unet(latents, t, ...)`` and its
guidance formula ``eps_n + g·(eps_p − eps_n)``.

* NegToMe: one :class:`posneg.generative.negtome.NegToMeAttnProcessor` per attention layer,
  installed with ``unet.set_attn_processor`` (SDXL's defaults but ``min_attn_dim = 8``,
  threshold 0); a torch forward pre-hook on the UNet hands them the pipeline's timestep
  (``set_negtome_timestep``). Installed but disabled, the images equal the plain pipeline's;
  enabled, they change, except image 0 (frame 0 of both CFG halves is the reference, never
  merged).
* Perp-Neg: a torch forward hook on the UNet (a documented ``nn.Module`` hook, no pipeline
  subclass) receives the pipeline's own noise predictions for ``[negative; prompt]``, adds the
  unconditional prediction (one more UNet call on the empty-prompt embedding), computes
  :func:`posneg.generative.perp_neg.guidance` and returns it in both halves, so the pipeline's
  formula ``e + g·(e − e)`` passes it through unchanged. With negative weight 0 this equals the
  plain pipeline run with the empty prompt as its negative (plain CFG); with weight > 0 it differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from posneg.generative.negtome import (  # noqa: E402
    NegToMe,
    NegToMeAttnProcessor,
    set_negtome_timestep,
)
from posneg.generative.perp_neg import guidance  # noqa: E402

SCALE = 5.0
STEPS = 5  # DDIM timesteps 801, 601, 401, 201, 1: one inside NegToMe's 800..1000 window
N_IMAGES = 3


def _pipeline() -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = diffusers.UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=8,
            attention_head_dim=4,
            norm_num_groups=4,
        )
        vae = diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 16),
            latent_channels=4,
            norm_num_groups=4,
            sample_size=16,
        )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=None,
        tokenizer=None,
        unet=unet.eval(),
        scheduler=diffusers.DDIMScheduler(
            num_train_timesteps=1000, set_alpha_to_one=True, steps_offset=1, clip_sample=False
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _embeds() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {name: torch.randn(1, 3, 8, generator=g) for name in ("pos", "neg", "empty")}


def _run(pipe: Any, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    out = pipe(
        prompt_embeds=pos,
        negative_prompt_embeds=neg,
        height=16,
        width=16,
        num_inference_steps=STEPS,
        guidance_scale=SCALE,
        num_images_per_prompt=N_IMAGES,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    )
    images: torch.Tensor = out.images
    return images


@pytest.fixture(scope="module")
def pipe() -> Any:
    return _pipeline()


def test_negtome_processor_runs_inside_the_pipeline_call(pipe: Any) -> None:
    e = _embeds()
    plain = _run(pipe, e["pos"], e["neg"])
    assert plain.shape == (N_IMAGES, 3, 16, 16)
    originals = dict(pipe.unet.attn_processors)
    # threshold 0: random weights give low token cosines; every best match merges
    merger = NegToMe(alpha=0.9, threshold=0.0)
    installed = {
        key: NegToMeAttnProcessor(key.removesuffix(".processor"), merger, min_attn_dim=8)
        for key in originals
    }
    pipe.unet.set_attn_processor(dict(installed))  # diffusers pops from the dict it is given
    procs = list(installed.values())
    assert any(p.name.startswith("up_blocks") and p.name.endswith("attn1") for p in procs)
    calls: list[float] = []

    def pre_hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        calls.append(float(t))
        set_negtome_timestep(procs, t)

    try:
        disabled = _run(pipe, e["pos"], e["neg"])  # installed, timestep None: no merging
        handle = pipe.unet.register_forward_pre_hook(pre_hook, with_kwargs=True)
        try:
            merged = _run(pipe, e["pos"], e["neg"])
        finally:
            handle.remove()
    finally:
        pipe.unet.set_attn_processor(dict(originals))
    assert calls == [801.0, 601.0, 401.0, 201.0, 1.0]  # the pipeline's own timesteps
    torch.testing.assert_close(disabled, plain)
    assert (merged[1:] - plain[1:]).abs().max() > 1e-3  # merging changed images 1..n-1
    torch.testing.assert_close(merged[0], plain[0], atol=1e-5, rtol=1e-4)  # the reference


def _perp_neg_hook(
    pipe: Any, empty: torch.Tensor, weight: float, method: str = "perp_neg"
) -> Callable[..., Any]:
    busy = [False]

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        if busy[0]:
            return None
        sample = output[0] if isinstance(output, tuple) else output.sample
        eps_neg, eps_pos = sample.chunk(2)  # the pipeline's own CFG batch [negative; prompt]
        latents, t = args[0], args[1] if len(args) > 1 else kwargs["timestep"]
        busy[0] = True
        try:
            eps_u = module(
                latents.chunk(2)[0], t, encoder_hidden_states=empty.expand(len(eps_pos), -1, -1)
            ).sample
        finally:
            busy[0] = False
        guided = guidance(
            eps_u, eps_pos, eps_neg[None], method=method, guidance_scale=SCALE, neg_weights=weight
        )  # type: ignore[arg-type]
        both = torch.cat([guided, guided])  # the pipeline's e + g·(e − e) returns it unchanged
        return (both,) if isinstance(output, tuple) else type(output)(sample=both)

    return hook


def test_perp_neg_on_the_pipelines_noise_predictions(pipe: Any) -> None:
    e = _embeds()
    cfg = _run(pipe, e["pos"], e["empty"])  # plain CFG: the empty prompt as the negative
    results = {}
    for w in (0.0, 1.0):
        handle = pipe.unet.register_forward_hook(
            _perp_neg_hook(pipe, e["empty"], w), with_kwargs=True
        )
        try:
            results[w] = _run(pipe, e["pos"], e["neg"])
        finally:
            handle.remove()
    torch.testing.assert_close(results[0.0], cfg, atol=1e-5, rtol=1e-4)
    assert (results[1.0] - cfg).abs().max() > 1e-3
    assert (results[1.0] - _run(pipe, e["pos"], e["neg"])).abs().max() > 1e-3  # not neg-CFG
