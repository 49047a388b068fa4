"""FlexAttention BlockMask in and out.

    block_mask = calibc.to_block_mask(masks, step, layer)          # (1, heads, tokens, tokens)
    out = flex_attention(q, k, v, block_mask=block_mask)           # q: (B, heads, tokens, head_dim)

    masks = calibc.from_block_masks({(step, layer): block_mask, ...}, head_dim=128)
    masks.write("masks.json")                                      # then `calibc compile masks.json …`

Export: the kept tiles of each head become FlexAttention *full* blocks (no per-element mask), and a
reused query block keeps its source's key blocks, as FlexAttention has no reuse: its output is
then computed, not copied, so it matches calibc's only where the source's output is a good
stand-in (what calibration checked). The mask_mod says the same as the blocks, element by
element, so flex_attention without torch.compile (which reads only the mask_mod) agrees with the
compiled kernels (which read only the blocks).

Import: every block a BlockMask lists, partial or full, becomes a kept tile (calibc computes tiles
whole, so a partial block's element mask is widened to the whole tile); no reuse.
"""

import numpy as np
import torch
from torch.nn.attention.flex_attention import BlockMask

from .masks import Masks, MasksError, Pattern

__all__ = ["to_block_mask", "from_block_mask", "from_block_masks"]


def to_block_mask(masks, step, layer, heads=None, device="cpu"):
    """The plans of (step, layer) of `masks` (a Masks) as a BlockMask of batch 1 over `heads`
    (default all heads, in order)."""
    heads = list(range(masks.heads)) if heads is None else list(heads)
    kept = torch.from_numpy(np.stack([masks.pattern(step, layer, h).expanded() for h in heads]))  # (H, Bq, Bk)
    counts = kept.sum(-1, dtype=torch.int32)
    # Kept key blocks first, ascending: a stable sort of "not kept".
    indices = torch.argsort((~kept).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    none = torch.zeros_like(counts)
    kept_dev, block = kept.to(device), masks.block

    def mask_mod(b, h, q_idx, kv_idx):
        return kept_dev[h, q_idx // block, kv_idx // block]

    return BlockMask.from_kv_blocks(none[None].to(device), indices[None].to(device), counts[None].to(device),
                                    indices[None].to(device), BLOCK_SIZE=block, mask_mod=mask_mod,
                                    seq_lengths=(masks.tokens, masks.tokens))


def _kept_of(num, indices, blocks):
    """(B, H, Bq, Bk) bool from a (num_blocks, indices) pair of a BlockMask."""
    b, h, q = num.shape
    kept = torch.zeros(b, h, q, blocks + 1, dtype=torch.bool)
    indices = indices.long()
    valid = (torch.arange(indices.shape[-1]) < num[..., None].long()) & (indices >= 0) & (indices < blocks)
    # Entries past the count point at column `blocks`, dropped below.
    columns = torch.where(valid, indices, torch.full_like(indices, blocks))
    kept.scatter_(-1, columns, True)
    return kept[..., :blocks]


def from_block_mask(block_mask, batch=0, heads=None):
    """One Pattern per head of `block_mask` (of batch element `batch`); a BlockMask with one head
    broadcasts to `heads` heads. Raises MasksError for a query block with no key block."""
    q_block, kv_block = block_mask.BLOCK_SIZE
    if q_block != kv_block:
        raise MasksError(f"calibc tiles are square: BLOCK_SIZE {block_mask.BLOCK_SIZE}")
    q_tokens, kv_tokens = block_mask.seq_lengths
    if q_tokens != kv_tokens:
        raise MasksError(f"self-attention only: seq_lengths {block_mask.seq_lengths}")
    blocks = -(-q_tokens // q_block)
    kv_num = block_mask.kv_num_blocks.cpu()[..., :blocks]
    kept = _kept_of(kv_num, block_mask.kv_indices.cpu()[..., :blocks, :], blocks)
    if block_mask.full_kv_num_blocks is not None:
        kept |= _kept_of(block_mask.full_kv_num_blocks.cpu()[..., :blocks],
                         block_mask.full_kv_indices.cpu()[..., :blocks, :], blocks)
    kept = kept[min(batch, kept.shape[0] - 1)]
    if heads is not None and kept.shape[0] == 1:
        kept = kept.expand(heads, -1, -1)
    for h in range(kept.shape[0]):
        empty = torch.nonzero(~kept[h].any(-1))
        if len(empty):
            raise MasksError(f"head {h}: query block {int(empty[0])} keeps no key block; calibc needs at least one")
    return [Pattern(kept[h].numpy()) for h in range(kept.shape[0])]


def from_block_masks(block_masks, head_dim, heads=None, model="", layout=None, batch=0):
    """A Masks from {(step, layer): BlockMask} covering every step and layer once; the shape comes
    from the BlockMasks (block size, sequence length, heads)."""
    if not block_masks:
        raise MasksError("no BlockMasks")
    first = next(iter(block_masks.values()))
    tokens, block = first.seq_lengths[0], first.BLOCK_SIZE[0]
    per = {}
    for key, bm in block_masks.items():
        if bm.seq_lengths[0] != tokens or bm.BLOCK_SIZE[0] != block:
            raise MasksError(f"step {key[0]} layer {key[1]}: every BlockMask needs one sequence length and block size")
        per[key] = from_block_mask(bm, batch=batch, heads=heads)
    timesteps = sorted({step for step, _ in per})
    return Masks.from_patterns(tokens, head_dim, block, timesteps, per, model=model, layout=layout)
