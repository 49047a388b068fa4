"""calibc.pipeline on the tiny Wan's pipeline stand-in: calibrate on prompts into an artifact
(resuming, in shards), enable and disable, and the checks made before any generation."""

import json
import os
import re
import sys

import pytest
import torch

pytest.importorskip("diffusers")

from calibc import pipeline
from conftest import CALIBC, ROOT
from tiny_wan import LAYERS, TinyWanPipeline, tiny_wan


@pytest.fixture(scope="module")
def pipe():
    return TinyWanPipeline(tiny_wan())


def test_calibrate_resume_enable_disable(pipe, tmp_path, monkeypatch):
    prompts = ["a red fox", "waves at dusk", "a city at night"]
    out = str(tmp_path / "artifact")
    settings = dict(steps=4, mass=0.9, sample_rows=1, block=64, targets=("cpu",), calibc=CALIBC, log=lambda _: None)
    # Shard 1 on a machine without calibc or nvcc: its states only.
    no_tool = dict(settings, calibc="/nonexistent/calibc", targets=("cuda",))
    assert pipeline.calibrate(pipe, prompts, out, shard=(1, 2), states_only=True, **no_tool) is None
    assert sorted(os.listdir(tmp_path / "artifact" / "states" / "transformer")) == ["prompt00001.safetensors"]
    pipe.calls = 0
    manifest = pipeline.calibrate(pipe, prompts, out, shard=(0, 2), **settings)
    assert pipe.calls == 2 * 2 * 4, "prompts 0 and 2 only: prompt 1's states were kept"
    entry = manifest["transformers"]["transformer"]
    assert entry == {"class": "WanTransformer3DModel", "layers": LAYERS, "heads": 4, "head_dim": 64,
                     "masks": "transformer/masks.json", "report": "transformer/report.html",
                     "libraries": {"cpu": "transformer/cpu/libcalibkernels.so"}}
    assert "<html" in (tmp_path / "artifact" / "transformer" / "report.html").read_text().lower()
    assert manifest["prompts"] == 3 and manifest["steps"] == 4 and "calibc" in manifest["versions"]
    masks = json.loads((tmp_path / "artifact" / "transformer" / "masks.json").read_text())
    assert masks["model_timesteps"] == [999.0, 750.0, 500.0, 250.0]
    again = (tmp_path / "artifact" / "transformer" / "masks.json").read_bytes()
    # Again where libclang cannot be opened (a calibc copied to a GPU machine): no generation,
    # the same masks, and what calibc said about its skipped check reaches the log.
    broken = tmp_path / "lib"
    broken.mkdir()
    (broken / "libclang-14.so.1").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(broken))
    pipe.calls, said = 0, []
    pipeline.calibrate(pipe, prompts, out, **dict(settings, log=said.append))
    assert pipe.calls == 0 and (tmp_path / "artifact" / "transformer" / "masks.json").read_bytes() == again
    assert [line for line in said if "libclang" in line] == [
        next(line for line in said if line.startswith("transformer (cpu): calibc check       skipped: libclang-14 could not be opened"))]
    monkeypatch.delenv("LD_LIBRARY_PATH")

    dense = pipe("a new prompt", num_inference_steps=6)
    with pytest.raises(ValueError, match="precision 'fp8' runs on the CUDA target"):  # a CPU artifact
        pipeline.enable(pipe, out, precision="fp8")
    assert torch.equal(pipe("a new prompt", num_inference_steps=6), dense), "a refused enable installed nothing"
    processors = pipeline.enable(pipe, out)
    sparse = pipe("a new prompt", num_inference_steps=6)  # 6 steps against 4 calibrated: the nearest
    assert processors["transformer"].calls == 2 * 6 * LAYERS and processors["transformer"].fallbacks == 0
    assert not torch.equal(sparse, dense)
    pipeline.disable(pipe)
    assert torch.equal(pipe("a new prompt", num_inference_steps=6), dense), "disable put the model back"


def test_what_cannot_work_is_said_before_generating(pipe, tmp_path, monkeypatch):
    pipe.calls = 0
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pipeline.PipelineError, match="nvcc not found"):
        pipeline.calibrate(pipe, ["p"], str(tmp_path / "a"), targets=("cuda",), calibc=CALIBC)
    with pytest.raises(pipeline.PipelineError, match="calibc not found"):
        pipeline.calibrate(pipe, ["p"], str(tmp_path / "a"), targets=("cpu",), calibc=str(tmp_path / "none"))
    from calibc.diffusers import ModelError

    with pytest.raises(ModelError, match="Linear: not a transformer calibc knows"):
        pipeline.calibrate(TinyWanPipeline(torch.nn.Linear(2, 2)), ["p"], str(tmp_path / "b"), targets=("cpu",),
                           calibc=CALIBC)
    assert pipe.calls == 0
    with pytest.raises(pipeline.PipelineError, match="not a calibc pipeline artifact"):
        pipeline.enable(pipe, str(tmp_path / "nothing"))


def test_a_head_dim_the_cuda_kernels_cannot_take_is_said_before_generating(tmp_path, monkeypatch):
    from diffusers import WanTransformer3DModel

    # The rule is the kernel's own: calib_cuda.cu's `#if CALIB_HEAD_DIM % M != 0 || CALIB_HEAD_DIM > N`.
    with open(os.path.join(ROOT, "Sources", "CalibKernelSources", "kernels", "cuda", "calib_cuda.cu")) as f:
        multiple, most = map(int, re.search(r"#if CALIB_HEAD_DIM % (\d+) != 0 \|\| CALIB_HEAD_DIM > (\d+)", f.read()).groups())
    assert [d for d in range(1, 2 * most) if pipeline.cuda_takes(d)] == list(range(multiple, most + 1, multiple))

    odd = TinyWanPipeline(WanTransformer3DModel(num_attention_heads=2, attention_head_dim=72, text_dim=32, freq_dim=32,
                                                ffn_dim=64, num_layers=1, rope_max_seq_len=64).eval())
    monkeypatch.setenv("NVCC", sys.executable)  # a tool on PATH stands in for nvcc: the check after it is the one tested
    with pytest.raises(pipeline.PipelineError, match="transformer: head_dim 72: the cuda target takes a multiple of 16"):
        pipeline.calibrate(odd, ["p"], str(tmp_path / "a"), targets=("cpu", "cuda"), calibc=CALIBC)
    assert odd.calls == 0


def test_the_command_checks_its_tools_before_loading_a_model(tmp_path, monkeypatch, capsys):
    (tmp_path / "prompts.txt").write_text("a red fox\n\nwaves at dusk\n")
    monkeypatch.delenv("CALIBC", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    status = pipeline.main(["calibrate", "--model", str(tmp_path / "no-model"), "--prompts", str(tmp_path / "prompts.txt"),
                            "-o", str(tmp_path / "out")])
    assert status == 1 and "calibc not found" in capsys.readouterr().err
    monkeypatch.setenv("CALIBC", CALIBC)
    status = pipeline.main(["calibrate", "--model", str(tmp_path / "no-model"), "--prompts", str(tmp_path / "prompts.txt"),
                            "-o", str(tmp_path / "out")])
    assert status == 1 and "nvcc not found" in capsys.readouterr().err


def test_evaluate_reports_dense_against_sparse_from_one_seed(pipe, tmp_path):
    pytest.importorskip("torchmetrics")
    out = str(tmp_path / "artifact")
    pipeline.calibrate(pipe, ["a red fox", "waves at dusk"], out, steps=4, mass=0.9, sample_rows=1, block=64,
                       targets=("cpu",), calibc=CALIBC, log=lambda _: None)
    report = pipeline.evaluate(pipe, out, ["a <b>held-out</b> prompt"], str(tmp_path / "eval"), steps=4, seed=3,
                               log=lambda _: None)
    (entry,) = report["prompts"]
    assert len(entry["drift"]) == 4 and entry["drift"][0] > 0, "the masks change every step's latents"
    assert 0 < entry["latents_rel_l2"] < 1 and entry["latents_psnr"] > 10
    # The stand-in's frames are a sigmoid of the latents: close, but not equal (equal frames give inf).
    assert 30 < entry["psnr"] < float("inf") and 0.9 < entry["ssim"] <= 1
    assert entry["dense_s"] > 0 and entry["sparse_s"] > 0
    errors = entry["attention_error_per_layer"]["transformer"]
    assert len(errors) == LAYERS and all(0 < e < 0.5 for e in errors)
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "a &lt;b&gt;held-out&lt;/b&gt; prompt" in page and 'src="prompt0-middle.png"' in page
    assert json.loads((tmp_path / "eval" / "report.json").read_text()) == json.loads(json.dumps(report))
    assert getattr(pipe, "_calibc_processors") == {}, "evaluate leaves the pipeline dense"
    # The same seed, dense: the same output as without calibc ever installed.
    again = pipeline.evaluate(pipe, out, ["a <b>held-out</b> prompt"], str(tmp_path / "eval2"), steps=4, seed=3,
                              log=lambda _: None)
    assert again["prompts"][0]["psnr"] == entry["psnr"]


def test_a_real_wan_pipeline_calibrates_enables_and_evaluates(tmp_path):
    """diffusers' WanPipeline (random VAE, the tiny Wan, prompt embeddings given directly): the
    whole path, an interrupted calibration resumed to the same masks, and evaluate's figures on a
    known answer (every plan dense: the frames equal dense attention's to rounding)."""
    pytest.importorskip("transformers")
    pytest.importorskip("torchmetrics")
    from tiny_wan import PIPELINE_SIZE, prompt, tiny_wan_pipeline

    wan = tiny_wan_pipeline()
    out = str(tmp_path / "artifact")
    settings = dict(steps=3, generate=dict(PIPELINE_SIZE, output_type="latent"), mass=0.9, sample_rows=1, block=64,
                    targets=("cpu",), calibc=CALIBC, log=lambda _: None)
    prompts = [prompt(0), prompt(1), prompt(3)]  # with two, leaving one out costs every head its stability
    manifest = pipeline.calibrate(wan, prompts, out, **settings)
    assert manifest["pipeline"] == "WanPipeline" and manifest["transformers"]["transformer"]["layers"] == LAYERS
    masks = (tmp_path / "artifact" / "transformer" / "masks.json").read_bytes()
    assert json.loads(masks)["model_timesteps"] == [999.0, 857.0, 600.0]  # UniPC with flow shift 3, 3 steps
    assert "\"dense\"" not in json.loads(masks)["assignments"][0]["pattern"]
    os.remove(tmp_path / "artifact" / "states" / "transformer" / "prompt00001.safetensors")  # killed after prompt 0
    pipeline.calibrate(wan, prompts, out, **settings)
    assert (tmp_path / "artifact" / "transformer" / "masks.json").read_bytes() == masks

    report = pipeline.evaluate(wan, out, [prompt(2)], str(tmp_path / "eval"), steps=3, generate=PIPELINE_SIZE,
                               log=lambda _: None)
    (entry,) = report["prompts"]
    assert entry["prompt"] == "prompt 0" and len(entry["drift"]) == 3 and entry["drift"][-1] > 0
    assert 0 < entry["ssim"] <= 1 and entry["psnr"] < float("inf")
    assert len(entry["attention_error_per_layer"]["transformer"]) == LAYERS

    # Every plan dense: calibc's kernels compute what SDPA does, to float32 rounding. (Another
    # folder: a process loads a library path once.)
    dense = tmp_path / "dense"
    (dense / "transformer").mkdir(parents=True)
    dense_masks = json.loads(masks)
    dense_masks["patterns"] = {}
    dense_masks["assignments"] = [{"steps": "*", "layers": "*", "heads": "*", "pattern": "dense"}]
    (dense / "transformer" / "masks.json").write_text(json.dumps(dense_masks))
    (dense / "manifest.json").write_text(json.dumps(manifest))
    import subprocess
    subprocess.run([CALIBC, "compile", str(dense / "transformer" / "masks.json"), "-o", str(dense / "transformer" / "cpu"),
                    "--shared"], check=True, capture_output=True)
    known = pipeline.evaluate(wan, str(dense), [prompt(2)], str(tmp_path / "known"), steps=3, generate=PIPELINE_SIZE,
                              attention_errors=False, log=lambda _: None)["prompts"][0]
    # Above 60 dB the frames are within a tenth of an 8-bit level (48 dB) of dense attention's.
    # The final latents differ by float32 rounding of each call, grown by guidance 5 over the steps.
    assert known["psnr"] > 60 and known["ssim"] > 0.999 and known["latents_rel_l2"] < 1e-2, known
    assert known["psnr"] > entry["psnr"] + 10 and known["latents_rel_l2"] < 0.1 * entry["latents_rel_l2"]
