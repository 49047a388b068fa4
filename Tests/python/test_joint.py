"""Joint text–video sequences on the CPU target through the package: a library whose masks put
text last takes per-batch valid text lengths (`text_lengths`), padded text takes no part (NaN
planted in its keys and values reaches no output) and its rows are zeros; bad lengths are
refused before anything is written. The kernels' own instruction sets are checked by the Swift
tests (JointTests); the CUDA target by test_cuda.py on the GPU machine."""

import numpy as np
import pytest
import torch

import calibc
from calibc.errors import ArgumentError
from conftest import compile_library, random_pattern, reference, relative_error

VIDEO, TEXT, DIM, BLOCK, HEADS = 301, 130, 32, 64, 3
TOKENS = VIDEO + TEXT


def joint_masks(seed, position="last", text=TEXT):
    rng = np.random.default_rng(seed)
    blocks = -(-(VIDEO + text) // BLOCK)
    per = {(0, 0): [random_pattern(rng, blocks, True, 0.4) for _ in range(HEADS)]}
    layout = {"frames": 7, "height": 1, "width": 43, "text_tokens": text, "text_position": position}
    return calibc.Masks.from_patterns(VIDEO + text, DIM, BLOCK, [0], per, model="joint", layout=layout)


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    masks = joint_masks(7)
    return compile_library(masks, tmp_path_factory.mktemp("joint")), masks


@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_padded_text_takes_no_part(joint, dtype, layout):
    kernels, masks = joint
    assert (kernels.text_tokens, kernels.text_first) == (TEXT, False)
    lengths = torch.tensor([0, 1, BLOCK - 1, BLOCK + 1, TEXT])
    batch = len(lengths)
    shape = (batch, TOKENS, HEADS, DIM) if layout == "bshd" else (batch, HEADS, TOKENS, DIM)
    q, k, v = (torch.randn(shape).to(dtype) for _ in range(3))
    heads_first = (lambda t: t.transpose(1, 2)) if layout == "bshd" else (lambda t: t)
    for b, n in enumerate(lengths.tolist()):
        heads_first(k)[b, :, VIDEO + n:] = float("nan")
        heads_first(v)[b, :, VIDEO + n:] = float("nan")
    out = torch.full(shape, float("nan"), dtype=dtype)
    timestep = torch.tensor([float(kernels.timesteps[0])])
    kernels.attention_at(timestep, 0, q, k, v, out=out, layout=layout, text_lengths=lengths)
    through_op = calibc.attention_at(q, k, v, kernels.path, timestep, 0, layout=layout, text_lengths=lengths.int())
    assert torch.equal(through_op, out)
    assert not out.isnan().any()
    patterns = [masks.pattern(0, 0, h) for h in range(HEADS)]
    bound = 1e-5 if dtype == torch.float32 else 1e-2
    for b, n in enumerate(lengths.tolist()):
        got = heads_first(out)[b]
        want = reference(patterns, heads_first(q)[b], heads_first(k)[b], heads_first(v)[b], BLOCK, VIDEO + n)
        assert relative_error(got, want) < bound, f"length {n}"
        assert (got[:, VIDEO + n:] == 0).all()


def test_all_text_valid_is_the_plain_layer_call(joint):
    kernels, _ = joint
    q, k, v = (torch.randn(2, TOKENS, HEADS, DIM) for _ in range(3))
    timestep = torch.tensor(float(kernels.timesteps[0]))
    full = kernels.attention_at(timestep, 0, q, k, v, text_lengths=torch.tensor([TEXT, TEXT]))
    assert torch.equal(full, kernels.attention_layer(0, 0, q, k, v))


def test_compiled_op_takes_lengths(joint):
    kernels, _ = joint
    q, k, v = (torch.randn(2, TOKENS, HEADS, DIM) for _ in range(3))
    timestep, lengths = torch.tensor(float(kernels.timesteps[0])), torch.tensor([5, 77], dtype=torch.int32)

    def f(q, k, v, t, n):
        return calibc.attention_at(q, k, v, kernels.path, t, 0, text_lengths=n) * 2

    assert torch.equal(torch.compile(f, fullgraph=True)(q, k, v, timestep, lengths), f(q, k, v, timestep, lengths))


@pytest.mark.parametrize("lengths, expected", [
    (torch.tensor([3]), r"expected shape \(2,\), one length per batch element, got \(1,\)"),
    (torch.tensor([[3, 4]]), r"expected shape \(2,\)"),
    (torch.tensor([3.0, 4.0]), "expected int32 or int64, got torch.float32"),
    (torch.tensor([3, TEXT + 1]), rf"expected values in 0…{TEXT} \(the text tokens\), got \[3, {TEXT + 1}\]"),
    (torch.tensor([-1, 0]), rf"expected values in 0…{TEXT}"),
    ([3, 4], "expected an integer tensor, got list"),
])
def test_bad_lengths_are_refused_before_anything_is_written(joint, lengths, expected):
    kernels, _ = joint
    q, k, v = (torch.randn(2, TOKENS, HEADS, DIM) for _ in range(3))
    out = torch.full_like(q, float("nan"))
    with pytest.raises(ArgumentError, match="text_lengths: " + expected):
        kernels.attention_at(torch.tensor(0.0), 0, q, k, v, out=out, text_lengths=lengths)
    assert out.isnan().all()


@pytest.mark.parametrize("position, text", [("first", 226), ("last", 0)])
def test_lengths_need_text_that_comes_last(tmp_path, position, text):
    kernels = compile_library(joint_masks(3, position, text), tmp_path)
    q = torch.randn(1, VIDEO + text, HEADS, DIM)
    with pytest.raises(ArgumentError, match="valid lengths apply to text that comes last"):
        kernels.attention_at(torch.tensor(0.0), 0, q, q, q, text_lengths=torch.tensor([1]))
    # Without lengths every token takes part, as CogVideoX's text-first attention has it.
    patterns = [joint_masks(3, position, text).pattern(0, 0, h) for h in range(HEADS)]
    out = kernels.attention_at(torch.tensor(0.0), 0, q, q, q)
    want = reference(patterns, q[0].transpose(0, 1), q[0].transpose(0, 1), q[0].transpose(0, 1), BLOCK)
    assert relative_error(out[0].transpose(0, 1), want) < 1e-5
