"""The layer call (C ABI 2) through Kernels and through torch.ops.calibc.attention_layer: every
(batch, head) against the float64 plan, both layouts, strided inputs, bf16, torch.compile."""

import pytest
import torch

import calibc
from conftest import compile_library, needs_layer_entry, random_masks, reference, relative_error

TOKENS, HEAD_DIM, BLOCK, LAYERS, HEADS, STEPS = 300, 32, 64, 2, 3, (0, 7)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    masks = random_masks(77, tokens=TOKENS, head_dim=HEAD_DIM, block=BLOCK, layers=LAYERS, heads=HEADS, timesteps=STEPS)
    return masks, compile_library(masks, tmp_path_factory.mktemp("ops"))


def inputs(seed, batch=2, dtype=torch.float32):
    """Fresh random q, k, v as (B, S, H, D) views into one fused (B, S, 3, H, D) tensor: strided,
    head_dim contiguous, the way a fused QKV projection leaves them."""
    g = torch.Generator().manual_seed(seed)
    fused = torch.randn(batch, TOKENS, 3, HEADS, HEAD_DIM, generator=g).to(dtype)
    return fused[:, :, 0], fused[:, :, 1], fused[:, :, 2]


def expected(masks, step, layer, q, k, v):
    """float64 reference of (B, S, H, D) inputs, as (B, S, H, D)."""
    patterns = [masks.pattern(step, layer, h) for h in range(HEADS)]
    return torch.stack([reference(patterns, q[b].transpose(0, 1), k[b].transpose(0, 1), v[b].transpose(0, 1),
                                  BLOCK).transpose(0, 1) for b in range(q.shape[0])])


@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_layer_call_is_the_float64_plan_of_every_batch_and_head(setup, layout):
    masks, kernels = setup
    needs_layer_entry(kernels)
    q, k, v = inputs(1)
    assert not q.is_contiguous()
    for step, layer in [(0, 0), (7, 1)]:
        want = expected(masks, step, layer, q, k, v)
        if layout == "bshd":
            out = torch.full((2, TOKENS, HEADS, HEAD_DIM), float("nan"))
            got = kernels.attention_layer(step, layer, q, k, v, out=out)
        else:
            # (B, H, S, D) views of the same memory, and an output buffer that is itself a transposed view.
            out = torch.full((2, TOKENS, HEADS, HEAD_DIM), float("nan")).transpose(1, 2)
            got = kernels.attention_layer(step, layer, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          out=out, layout="bhsd").transpose(1, 2)
        assert got.data_ptr() == out.data_ptr()
        assert not got.isnan().any(), "the kernel left elements of the output unwritten"
        assert (got.double() - want).abs().max().item() < 2e-6


def test_custom_op_eager_and_compiled_without_graph_breaks(setup):
    masks, kernels = setup
    needs_layer_entry(kernels)
    torch._dynamo.reset()

    def block(q, k, v, step):
        # Something around the op, so the compiled graph has more than the op in it.
        return calibc.attention_layer(q * 1.0, k, v, kernels.path, step, 1).relu() + 1.0

    compiled = torch.compile(block, fullgraph=True)
    for seed, step in [(2, 0), (3, 7), (4, 0)]:
        q, k, v = inputs(seed)
        want = (expected(masks, step, 1, q, k, v).relu() + 1.0)
        eager = block(q, k, v, step)
        graph = compiled(q, k, v, step)
        assert eager.dtype == graph.dtype == torch.float32 and graph.shape == q.shape and graph.is_contiguous()
        assert (eager.double() - want).abs().max().item() < 2e-6
        assert torch.equal(eager, graph)
    # fullgraph=True raises on a graph break; say so explicitly too.
    assert torch._dynamo.utils.counters["graph_break"] == {}


def test_op_by_timestep_compiles_once_for_every_step(setup):
    """calibc.attention_at: the step nearest the timestep tensor, one graph for every timestep."""
    masks, kernels = setup
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()

    def block(q, k, v, timestep):
        return calibc.attention_at(q * 1.0, k, v, kernels.path, timestep, 1) + 1.0

    compiled = torch.compile(block, fullgraph=True)
    for seed, (t, step) in enumerate([(0.0, 0), (7.0, 7), (3.4, 0), (3.5, 0), (3.6, 7), (100.0, 7), (-4.0, 0)]):
        q, k, v = inputs(20 + seed)
        got = compiled(q, k, v, torch.tensor([t]))
        assert torch.equal(got, kernels.attention_layer(step, 1, q, k, v) + 1.0), (t, step)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    torch.library.opcheck(torch.ops.calibc.attention_at.default, (q, k, v, kernels.path, torch.tensor([7.0]), 0, 0,
                                                                   "bshd"),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_custom_op_registration_passes_opcheck(setup):
    _, kernels = setup
    needs_layer_entry(kernels)
    q, k, v = (t.contiguous() for t in inputs(5, batch=1))
    torch.library.opcheck(torch.ops.calibc.attention_layer.default, (q, k, v, kernels.path, 7, 0, "bshd"),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_bfloat16_in_and_out(setup):
    masks, kernels = setup
    needs_layer_entry(kernels)
    q, k, v = inputs(6, dtype=torch.bfloat16)
    compiled = torch.compile(lambda q, k, v: calibc.attention_layer(q, k, v, kernels.path, 0, 0), fullgraph=True)
    out = compiled(q, k, v)
    assert out.dtype == torch.bfloat16
    want = expected(masks, 0, 0, q.double(), k.double(), v.double())
    # Inputs are the same bfloat16 values; the kernels may round probabilities to bfloat16 for P·V, and the
    # output is rounded to bfloat16 (relative step 2^-8).
    assert relative_error(out, want) < 1e-2
    assert relative_error(out, want) > 0, "bf16 rounding should show"
    assert torch.equal(out, calibc.attention_layer(q, k, v, kernels.path, 0, 0))


def test_dense_layer_call_is_sdpa(setup):
    _, kernels = setup
    needs_layer_entry(kernels)
    q, k, v = inputs(8)
    out = torch.full((2, HEADS, TOKENS, HEAD_DIM), float("nan"))
    got = kernels.dense_attention_layer(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), out=out, layout="bhsd")
    want = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2).double() for t in (q, k, v)))
    assert (got.double() - want).abs().max().item() < 2e-6
    assert torch.equal(calibc.dense_attention_layer(q, k, v, kernels.path), got.transpose(1, 2))


def test_layer_call_errors(setup):
    _, kernels = setup
    needs_layer_entry(kernels)
    q, k, v = inputs(9)
    with pytest.raises(calibc.CalibError, match="no plan") as e:
        kernels.attention_layer(3, 0, q, k, v)
    assert e.value.status == 2
    with pytest.raises(calibc.CalibError, match="shape mismatch") as e:
        kernels.attention_layer(0, 0, q[:, :, :2], k[:, :, :2], v[:, :, :2])
    assert e.value.status == 1
    with pytest.raises(ValueError, match="float32 or all bfloat16"):
        kernels.attention_layer(0, 0, q, k, v.to(torch.bfloat16))
    with pytest.raises(ValueError, match="head dimension must be contiguous"):
        kernels.attention_layer(0, 0, q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3))
    with pytest.raises(RuntimeError, match=r"must all have one of the dtypes \(torch.float32, torch.bfloat16\) on cpu"):
        calibc.attention_layer(q.double(), k.double(), v.double(), kernels.path, 0, 0)


def test_a_subset_of_heads_uses_their_global_plans(setup):
    """What a context-parallel rank runs: heads 1 and 2 alone, with the plans of heads 1 and 2."""
    masks, kernels = setup
    q, k, v = inputs(10)
    want = expected(masks, 7, 0, q, k, v)
    out = torch.full((2, TOKENS, 2, HEAD_DIM), float("nan"))
    got = kernels.attention_heads(7, 0, 1, q[:, :, 1:], k[:, :, 1:], v[:, :, 1:], out=out)
    assert (got.double() - want[:, :, 1:]).abs().max().item() < 2e-6
    with pytest.raises(calibc.CalibError, match="shape mismatch") as e:  # heads 2 and 3 of 3
        kernels.attention_heads(7, 0, 2, q[:, :, 1:], k[:, :, 1:], v[:, :, 1:])
    assert e.value.status == 1


def test_the_cpu_target_refuses_fp8_and_unknown_precisions(setup):
    """FP8 products are the CUDA target's (docs/gpu.md "FP8"): every CPU entry and op refuses
    precision "fp8" or "fp8-pv" saying where it runs, before anything is written; an unknown precision names
    the ones there are."""
    _, kernels = setup
    needs_layer_entry(kernels)
    q, k, v = inputs(11)
    out = torch.full_like(q, float("nan"))
    timestep = torch.tensor([float(STEPS[0])])
    calls = [lambda p: kernels.attention_layer(0, 0, q, k, v, out=out, precision=p),
             lambda p: kernels.attention_heads(0, 0, 0, q, k, v, out=out, precision=p),
             lambda p: kernels.attention_at(timestep, 0, q, k, v, out=out, precision=p),
             lambda p: kernels.dense_attention_layer(q, k, v, out=out, precision=p),
             lambda p: calibc.attention_layer(q, k, v, kernels.path, 0, 0, precision=p),
             lambda p: calibc.attention_at(q, k, v, kernels.path, timestep, 0, precision=p),
             lambda p: calibc.dense_attention_layer(q, k, v, kernels.path, precision=p)]
    for call in calls:
        for fp8 in ("fp8", "fp8-pv"):
            with pytest.raises(calibc.errors.ArgumentError, match=f"precision '{fp8}': .*CUDA"):
                call(fp8)
        with pytest.raises(calibc.errors.ArgumentError, match=r"precision: expected None .*, 'fp8' or 'fp8-pv', got 'int8'"):
            call("int8")
    assert out.isnan().all()
    assert torch.equal(kernels.attention_layer(0, 0, q, k, v, precision=None), kernels.attention_layer(0, 0, q, k, v))
