"""FlexAttention BlockMask export and import against masks.json and against calibc's kernels."""

import numpy as np
import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import calibc
from conftest import compile_library, random_masks, reference, relative_error, run_calibc



@pytest.mark.parametrize("tokens, block", [(300, 64), (256, 32)])
def test_masks_to_block_mask_to_masks_keeps_the_plans(tmp_path, tokens, block):
    masks = random_masks(21, tokens=tokens, block=block, layers=2, heads=3, timesteps=(0, 5, 9))
    block_masks = {(s, layer): calibc.to_block_mask(masks, s, layer) for s in masks.timesteps
                   for layer in range(masks.layers)}
    bm = block_masks[(5, 1)]
    assert bm.shape == (1, 3, tokens, tokens) and bm.BLOCK_SIZE == (block, block)
    assert int(bm.kv_num_blocks.sum()) == 0, "kept tiles are full blocks, none partial"
    back = calibc.from_block_masks(block_masks, head_dim=masks.head_dim)
    assert (back.tokens, back.block, back.layers, back.heads, back.timesteps) == (tokens, block, 2, 3, [0, 5, 9])
    reused = 0
    for s in masks.timesteps:
        for layer in range(masks.layers):
            for head in range(masks.heads):
                original, imported = masks.pattern(s, layer, head), back.pattern(s, layer, head)
                assert imported.reuse == {}
                assert np.array_equal(imported.kept, original.expanded())
                # Reuse aside, the same plan: computed rows are untouched.
                computed = [q for q in range(original.blocks) if q not in original.reuse]
                assert np.array_equal(imported.kept[computed], original.kept[computed])
                reused += len(original.reuse)
    assert reused > 0
    # calibc reads the file written from the import as these plans: no reuse, the same density.
    path = tmp_path / "imported.json"
    back.write(path)
    density = np.mean([back.pattern(s, layer, head).density() for s in back.timesteps for layer in range(2)
                       for head in range(3)])
    assert f"density {density:.3f}, reuse fraction 0.000" in run_calibc("stats", path)


def test_import_widens_partial_blocks_to_tiles():
    tokens, block, window = 200, 32, 40

    def sliding(b, h, q, kv):
        return (q - kv).abs() <= window

    bm = create_block_mask(sliding, None, 2, tokens, tokens, device="cpu", BLOCK_SIZE=block)
    patterns = calibc.from_block_mask(bm)
    dense = (torch.arange(tokens)[:, None] - torch.arange(tokens)[None]).abs() <= window
    blocks = -(-tokens // block)
    expected = torch.zeros(blocks, blocks, dtype=torch.bool)
    for q in range(blocks):
        for k in range(blocks):
            expected[q, k] = dense[q * block:(q + 1) * block, k * block:(k + 1) * block].any()
    assert len(patterns) == 2
    for p in patterns:
        assert np.array_equal(p.kept, expected.numpy())
    with pytest.raises(calibc.MasksError, match="keeps no key block"):
        calibc.from_block_mask(create_block_mask(lambda b, h, q, kv: q < 0, None, 1, 64, 64, device="cpu",
                                                 BLOCK_SIZE=32))


def test_flex_attention_with_the_exported_mask_is_the_float64_plan():
    masks = random_masks(33, tokens=300, head_dim=32, block=64, layers=1, heads=3, timesteps=(2,))
    bm = calibc.to_block_mask(masks, 2, 0)
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 3, 300, 32, generator=g) for _ in range(3))
    expanded = [calibc.Pattern(masks.pattern(2, 0, h).expanded()) for h in range(3)]
    eager = flex_attention(q, k, v, block_mask=bm)
    compiled = torch.compile(flex_attention, fullgraph=True, dynamic=False)(q, k, v, block_mask=bm)
    for b in range(2):
        expected = reference(expanded, q[b], k[b], v[b], 64)
        assert (eager[b].double() - expected).abs().max().item() < 2e-6
        assert (compiled[b].double() - expected).abs().max().item() < 2e-6
    # The mask matters: dense attention is far from it.
    assert relative_error(torch.nn.functional.scaled_dot_product_attention(q, k, v), eager) > 1e-2


def test_flex_attention_equals_calibc_kernels(tmp_path):
    masks = random_masks(44, tokens=300, head_dim=32, block=64, layers=2, heads=3, timesteps=(0, 7))
    kernels = compile_library(masks, tmp_path)
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(1, 3, 300, 32, generator=g) for _ in range(3))
    flex = torch.compile(flex_attention, fullgraph=True, dynamic=False)
    for step, layer in [(0, 1), (7, 0)]:
        theirs = flex(q, k, v, block_mask=calibc.to_block_mask(masks, step, layer))[0]
        for head in range(3):
            pattern = masks.pattern(step, layer, head)
            out = torch.full((300, 32), float("nan"))
            ours = kernels.attention(step, layer, head, q[0, head], k[0, head], v[0, head], out=out)
            assert not ours.isnan().any()
            for qb in range(pattern.blocks):
                rows = slice(qb * 64, min(300, qb * 64 + 64))
                if qb in pattern.reuse:
                    # calibc copies the source's output rows; flex computes the block with the source's keys.
                    src = pattern.source(qb) * 64
                    assert torch.equal(ours[rows], ours[src:src + rows.stop - rows.start])
                else:
                    assert (ours[rows] - theirs[head, rows]).abs().max().item() < 2e-6, (step, layer, head, qb)
