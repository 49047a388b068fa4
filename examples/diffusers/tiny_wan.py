"""A small, randomly initialised diffusers Wan whose attention looks like a video model's: what
the example (end_to_end.py, beside this file) and the tests (Tests/python, which put this
directory on their path) run on, with no downloads.

WanTransformer3DModel from a config (2 layers, 4 heads of 64 dims, 8 latent frames of 32×32 →
2048 tokens). Random weights give flat attention, so the query and key projections are set the
way trained video models behave: small weights and a large per-head bias, which after the RMSNorm
and the 3D rotary embedding makes q·k depend on the position offset — per head mostly along time
(a spatial head), along height and width (a temporal head), or all three (a local window). The
"denoising" is a fixed number of transformer calls on latents that drift between steps; prompts
differ by their noise and text embedding.
"""

import torch
from diffusers import WanTransformer3DModel

STEPS, HEADS, HEAD_DIM, LAYERS = 4, 4, 64, 2
TIMESTEPS = [999 - step * 999 // STEPS for step in range(STEPS)]  # what denoise gives the transformer: 999, 750, 500, 250
LATENT = (1, 16, 8, 32, 32)  # B, C, F, H, W → 8 × 16 × 16 = 2048 tokens with patch (1, 2, 2)
TOKENS = 2048


def tiny_wan(seed=0):
    torch.manual_seed(seed)
    model = WanTransformer3DModel(num_attention_heads=HEADS, attention_head_dim=HEAD_DIM, text_dim=32, freq_dim=32,
                                  ffn_dim=256, num_layers=LAYERS, rope_max_seq_len=64).eval()
    # Head h: RoPE sections t (24 dims), h (20), w (20) of head_dim 64; energy per section picks the head type.
    sections = [(0, 24), (24, 44), (44, 64)]
    kinds = [(1.0, 0.1, 0.1), (0.1, 1.0, 1.0), (1.0, 1.0, 1.0), (0.6, 0.4, 0.4)]
    with torch.no_grad():
        for block in model.blocks:
            attn = block.attn1
            bias = torch.zeros(HEADS * HEAD_DIM)
            for h, energy in enumerate(kinds[:HEADS]):
                for (lo, hi), e in zip(sections, energy):
                    bias[h * HEAD_DIM + lo:h * HEAD_DIM + hi:2] = e  # the first of each rotated pair
            for proj in (attn.to_q, attn.to_k):
                proj.weight.mul_(0.05)
                proj.bias.copy_(bias)
            attn.norm_q.weight.fill_(3.0)
            attn.norm_k.weight.fill_(3.0)
    return model


def denoise(model, prompt, steps=STEPS, latent=LATENT, guidance=None):
    """A fixed schedule of transformer calls (timesteps 999 down in `steps` equal strides); returns
    the last output. guidance="batched" runs a second, unconditional batch element in the same
    call and "separate" in a second call, as pipelines with classifier-free guidance do; the
    output is then the conditional one."""
    g = torch.Generator().manual_seed(1000 + prompt)
    latents = torch.randn(latent, generator=g)
    text = torch.randn(latent[0], 16, 32, generator=g)
    empty = torch.zeros_like(text)
    out = None
    with torch.no_grad():
        for step in range(steps):
            t = torch.tensor([999 - step * 999 // steps] * latent[0])
            if guidance == "batched":
                both = model(hidden_states=torch.cat([latents, latents]), timestep=torch.cat([t, t]),
                             encoder_hidden_states=torch.cat([text, empty]), return_dict=False)[0]
                out = both[:latent[0]]
            else:
                out = model(hidden_states=latents, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
                if guidance == "separate":
                    model(hidden_states=latents, timestep=t, encoder_hidden_states=empty, return_dict=False)
            latents = latents - 0.2 * out
    return out


class TinyWanPipeline:
    """What calibc.pipeline needs of a diffusers pipeline, on the tiny Wan: `transformer` and a call
    with prompt and num_inference_steps (timesteps 999 down in equal strides, guidance as a
    second call per step), a generator for the noise (else the prompt's text picks it),
    `callback_on_step_end` as diffusers pipelines call it, and output_type "np" giving `frames`
    (the latents' first three channels through a sigmoid, as (F, H, W, 3) in [0, 1]) where
    "latent" gives the latents. `calls` counts transformer calls."""

    def __init__(self, transformer):
        self.transformer, self.calls = transformer, 0

    def __call__(self, prompt, num_inference_steps=STEPS, guidance_scale=5.0, generator=None, output_type="latent",
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("latents",)):
        g = generator or torch.Generator().manual_seed(sum(prompt.encode()) % 1000)
        latents = torch.randn(LATENT, generator=g)
        text = torch.randn(LATENT[0], 16, 32, generator=torch.Generator().manual_seed(sum(prompt.encode())))
        with torch.no_grad():
            for step in range(num_inference_steps):
                t = torch.tensor([999 - step * 999 // num_inference_steps] * LATENT[0])
                cond = self.transformer(hidden_states=latents, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
                uncond = self.transformer(hidden_states=latents, timestep=t, encoder_hidden_states=torch.zeros_like(text),
                                          return_dict=False)[0]
                self.calls += 2
                latents = latents - 0.2 * (uncond + guidance_scale * (cond - uncond)) / guidance_scale
                if callback_on_step_end is not None:
                    latents = callback_on_step_end(self, step, t, {"latents": latents})["latents"]
        if output_type == "np":
            return _Frames([torch.sigmoid(latents[0, :3]).permute(1, 2, 3, 0).numpy()])
        return latents


class _Frames:
    def __init__(self, frames):
        self.frames = frames


def tiny_wan_pipeline(transformer=None):
    """diffusers' own WanPipeline around the tiny Wan, with a random Wan VAE and the UniPC flow
    scheduler Wan ships, no tokenizer or text encoder (give prompt_embeds: `prompt(i)`): 29 frames
    of 256 × 256 are latents of 8 × 32 × 32, the tiny Wan's 2048 tokens. Needs transformers."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline

    torch.manual_seed(1)
    vae = AutoencoderKLWan(base_dim=16, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1).eval()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer or tiny_wan(),
                       scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


PIPELINE_SIZE = {"height": 256, "width": 256, "num_frames": 29}


def prompt(i):
    """A prompt of the tiny Wan's pipeline, as the keyword arguments it takes: text embeddings."""
    g = torch.Generator().manual_seed(3000 + i)
    return {"prompt_embeds": torch.randn(1, 16, 32, generator=g), "negative_prompt_embeds": torch.zeros(1, 16, 32)}
