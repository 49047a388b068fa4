"""Every model calibc.diffusers reaches, on the CPU: tiny random configurations of diffusers' own
WanTransformer3DModel and LTXVideoTransformer3DModel (video-only self-attention),
MochiTransformer3DModel (text last, padded text dropped per sample),
HunyuanVideoTransformer3DModel (text last, padded text masked; dual- and single-stream layers)
and CogVideoXTransformer3DModel (text first, never padded) each run record → calibrate → compile
→ a sparse forward with zero fallbacks, several valid text lengths in one batch where the model
pads, and the output equals the model run with the compiled masks applied as an explicit
float64 attention (padded text no key, its rows zeros); and the streaming Calibrator decides the
masks the recordings do."""

import json

import pytest
import torch

import calibc
from calibc.diffusers import CalibAttention, Calibrator, Recorder, wrap_self_attention
from calibc.diffusers.hooks import text_lengths
from calibc.diffusers.models import model_of
from calibc.safetensors import read_header
from conftest import reference, relative_error, run_calibc

BLOCK, TIMESTEPS = 16, (900.0, 300.0)


def mochi():
    from diffusers import MochiTransformer3DModel

    torch.manual_seed(0)
    model = MochiTransformer3DModel(patch_size=2, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                                    pooled_projection_dim=16, in_channels=4, text_embed_dim=16, time_embed_dim=4,
                                    max_sequence_length=16).eval()
    latents = torch.randn(3, 4, 2, 8, 8)  # 2 × 4 × 4 = 32 video tokens, 16 text slots after them
    text, lengths = torch.randn(3, 16, 16), [11, 16, 3]

    def forward(t, prompt=0):  # prompt p: the lengths rotated by p (another valid length in element 0)
        mask = torch.arange(16)[None, :] < torch.tensor(lengths[prompt:] + lengths[:prompt])[:, None]
        return model(hidden_states=latents, encoder_hidden_states=text, timestep=torch.full((3,), t),
                     encoder_attention_mask=mask, return_dict=False)[0]

    return model, forward, 32 + 16


def hunyuan():
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(0)
    model = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16,
                                           num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=2,
                                           patch_size_t=1, text_embed_dim=16, pooled_projection_dim=8,
                                           rope_axes_dim=(4, 6, 6)).eval()
    latents = torch.randn(3, 4, 2, 8, 8)  # 32 video tokens, 12 text slots after them
    text, pooled, lengths = torch.randn(3, 12, 16), torch.randn(3, 8), [7, 12, 1]

    def forward(t, prompt=0):
        mask = (torch.arange(12)[None, :] < torch.tensor(lengths[prompt:] + lengths[:prompt])[:, None]).long()
        return model(hidden_states=latents, timestep=torch.full((3,), t), encoder_hidden_states=text,
                     encoder_attention_mask=mask, pooled_projections=pooled, guidance=torch.full((3,), 3500.0),
                     return_dict=False)[0]

    return model, forward, 32 + 12


def cogvideox():
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
                                        time_embed_dim=8, text_embed_dim=16, num_layers=2, sample_width=8,
                                        sample_height=8, sample_frames=5, patch_size=2, max_text_seq_length=8).eval()
    latents = torch.randn(2, 2, 4, 8, 8)  # (B, F, C, H, W): 32 video tokens after 8 text tokens
    text = torch.randn(2, 8, 16)

    def forward(t, prompt=0):
        return model(hidden_states=latents + prompt, encoder_hidden_states=text, timestep=torch.full((2,), int(t)),
                     return_dict=False)[0]

    return model, forward, 8 + 32


def wan():
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    model = WanTransformer3DModel(num_attention_heads=2, attention_head_dim=16, text_dim=16, freq_dim=16, ffn_dim=32,
                                  num_layers=2, rope_max_seq_len=32).eval()
    latents, text = torch.randn(2, 16, 2, 8, 8), torch.randn(2, 8, 16)  # 2 × 4 × 4 = 32 tokens

    def forward(t, prompt=0):
        return model(hidden_states=latents + prompt, timestep=torch.full((2,), t), encoder_hidden_states=text,
                     return_dict=False)[0]

    return model, forward, 32


def ltx():
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    model = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=16,
                                       cross_attention_dim=32, num_layers=2, caption_channels=16).eval()
    latents, text, mask = torch.randn(2, 40, 8), torch.randn(2, 6, 16), torch.ones(2, 6)  # 2 × 4 × 5 = 40 tokens

    def forward(t, prompt=0):
        return model(latents + prompt, text, torch.full((2,), t), mask, num_frames=2, height=4, width=5,
                     return_dict=False)[0]

    return model, forward, 40


MODELS = {"wan": wan, "ltx": ltx, "mochi": mochi, "hunyuan": hunyuan, "cogvideox": cogvideox}


def generate(forward, prompt=0):
    with torch.no_grad():
        return [forward(t, prompt) for t in TIMESTEPS]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_record_calibrate_compile_and_run_sparse(name, tmp_path):
    model, forward, tokens = MODELS[name]()
    spec = model_of(model)
    dense = generate(forward)
    recorder = Recorder(model, str(tmp_path / "r.safetensors"), dtype=torch.float32)
    try:
        recorded = generate(forward)
    finally:
        recorder.remove()
    # Mochi runs calibc's one-call joint processor while calibc is installed: its per-sample loop's
    # answer to float rounding; every other model bit for bit.
    for a, b in zip(recorded, dense):
        assert torch.equal(a, b) if spec.replacement is None else relative_error(a, b) < 1e-5, "recording changed it"
    recorder.save()
    meta = read_header(str(tmp_path / "r.safetensors"))[0]["__metadata__"]
    text = tokens - {"ltx": 40}.get(name, 32)
    assert (meta["tokens"], meta["text_tokens"], meta.get("text_position")) == (str(tokens), str(text), spec.text)
    assert meta.get("text_valid") == ({"mochi": "11", "hunyuan": "7"}.get(name))
    run_calibc("calibrate", tmp_path / "r.safetensors", "--block", BLOCK, "--mass", "0.5", "-o", tmp_path / "masks.json")
    doc = json.loads((tmp_path / "masks.json").read_text())
    assert doc["layout"].get("text_tokens", 0) == text
    assert doc["layout"].get("text_position") == spec.text or not text
    run_calibc("compile", tmp_path / "masks.json", "-o", tmp_path / "kernels", "--shared")
    library = str(tmp_path / "kernels" / "libcalibkernels.so")
    masks = calibc.Masks.read(str(tmp_path / "masks.json"))
    kernels = calibc.load(library)
    layers = len(spec.attention_modules(model))
    kept = [masks.pattern(s, layer, h).kept for s in kernels.steps for layer in range(layers) for h in range(kernels.heads)]
    assert not all(k.all() for k in kept), "every tile kept: the comparison below could not fail"

    sparse = CalibAttention(model, library)
    try:
        got = generate(forward)
    finally:
        sparse.remove()
    assert sparse.fallbacks == 0, sparse.fallback_reasons
    assert sparse.calls == layers * len(TIMESTEPS)

    def explicit(layer):
        def attend(original, query, key, value, *args, **kwargs):
            step = kernels.steps[int(kernels.step_index(sparse_timestep[0]))]
            mask = kwargs.get("attn_mask", args[0] if args else None)
            lengths = text_lengths(spec, mask, query.shape[1], text)
            out = torch.empty_like(query, dtype=torch.float64)
            patterns = [masks.pattern(step, layer, h) for h in range(query.shape[2])]
            for b in range(query.shape[0]):
                end = None if lengths is None else query.shape[1] - text + int(lengths[b])
                out[b] = reference(patterns, *(x[b].transpose(0, 1) for x in (query, key, value)), BLOCK,
                                   end).transpose(0, 1)
            return out.to(query.dtype)

        return attend

    from calibc.diffusers import Timesteps

    seen = Timesteps(model)
    sparse_timestep = [None]
    hook = model.register_forward_pre_hook(lambda m, a, kw: sparse_timestep.__setitem__(0, seen.current),
                                           with_kwargs=True)
    restore = wrap_self_attention(model, explicit)
    try:
        want = generate(forward)
    finally:
        restore()
        hook.remove()
        seen.remove()
    for step, (g, w, d) in enumerate(zip(got, want, dense)):
        assert relative_error(g, w) < 1e-4, f"step {step}"
    assert all(torch.equal(a, b) for a, b in zip(generate(forward), dense)), "calibc was left installed"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_calibrator_state_decides_the_masks_calibrating_the_recordings_does(name, tmp_path):
    """The streaming Calibrator (block mass of the valid tokens in torch, text blocks whole) and
    recordings of q and k through `calibc calibrate`, on prompts whose valid text lengths differ:
    the same masks."""
    model, forward, _ = MODELS[name]()
    options = ["--block", BLOCK, "--mass", "0.6", "--reuse-tolerance", "0.05", "--stability-drop", "0.1"]
    calibrator = Calibrator(model, mass=0.6, block=BLOCK, reuse_tolerance=0.05, stability_drop=0.1)
    try:
        for prompt in (0, 1, 2):
            generate(forward, prompt)
            calibrator.next_prompt()
    finally:
        calibrator.remove()
    calibrator.save(str(tmp_path / "state.safetensors"), model="tiny")
    recordings = []
    for prompt in (0, 1, 2):
        recordings.append(tmp_path / f"r{prompt}.safetensors")
        recorder = Recorder(model, str(recordings[-1]), dtype=torch.float32)
        try:
            generate(forward, prompt)
        finally:
            recorder.remove()
        recorder.save()
    run_calibc("calibrate", "--merge", tmp_path / "state.safetensors", "-o", tmp_path / "streamed.json")
    run_calibc("calibrate", *recordings, *options, "-o", tmp_path / "recorded.json")
    streamed, recorded = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("streamed", "recorded"))
    assert streamed.get("layout") == recorded.get("layout"), (streamed.get("layout"), recorded.get("layout"))
    assert streamed["patterns"] == recorded["patterns"] and streamed["assignments"] == recorded["assignments"]


def test_kernels_whose_text_differs_from_the_calls_fall_back_and_say_so(tmp_path):
    """CogVideoX's calls hold 8 text tokens first; kernels of the same 40 tokens compiled as video
    alone must not run them (their tiles would be the wrong tokens): dense, with the reason."""
    import numpy as np

    model, forward, tokens = cogvideox()
    blocks = -(-tokens // BLOCK)
    dense = calibc.Pattern(np.ones((blocks, blocks), dtype=bool))
    per = {(s, layer): [dense] * 2 for s in range(2) for layer in range(2)}
    masks = calibc.Masks.from_patterns(tokens, 16, BLOCK, [0, 1], per, model="video-only",
                                       layout={"frames": 2, "height": 4, "width": 5})
    masks.write(str(tmp_path / "m.json"))
    run_calibc("compile", tmp_path / "m.json", "-o", tmp_path / "k", "--shared")
    sparse = CalibAttention(model, str(tmp_path / "k" / "libcalibkernels.so"))
    try:
        with pytest.warns(UserWarning, match=r"8 text tokens first beside its 2 × 4 × 4 video tokens; .* compiled for "
                                             r"no text") as caught:
            generate(forward)
    finally:
        sparse.remove()
    assert sparse.calls == 0 and sparse.fallback_reasons == {"text": 2 * len(TIMESTEPS)}
    assert sum("calibc" in str(w.message) for w in caught) == 1, "said once, not once a call"
