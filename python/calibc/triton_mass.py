"""Block attention mass on the GPU, in Triton: what `calibration.block_mass` computes, in one
kernel launch per attention call, never holding more than a tile of scores.

    mass = block_mass(q, k, block=128)            # (H, B, B) float32, as calibration.block_mass
    mass = block_mass(q, k, block=128, step=8)    # from rows r ≡ 4 (mod 8) of every query block

q and k are (H, N, D) views with unit stride along D (diffusers' (B, S, H, D) tensors need no
copy: pass `q[0].transpose(0, 1)`), bf16 or fp16. Each program takes the rows of a few query
blocks (128 or more) over all keys once, as a flash-attention forward does, keeping per row and
key block the log-sum-exp of its scores (rows × blocks floats of scratch, at most 1 GiB, heads
in groups) until the row's total is known; then mass = Σ exp(lse_block − lse_row) over the rows
of each query block. One pass of QKᵀ and one exp per score, and no tokens × tokens matrix.

`step` samples rows as `calibc calibrate --sample-rows` does: the mass of a query block is then
the mean over its rows step // 2, step // 2 + step, … (its first row when it is too short for
any) instead of over all of them, and the kernel does 1/step of the work.
docs/calibration.md (section 8) measures what that changes in the masks and what it saves.
"""

import math

import torch
import triton
import triton.language as tl

__all__ = ["block_mass"]


@triton.jit
def _key_block(q, k_base, k_token, kb, tokens, scale_log2, m, l, scratch, BLOCK: tl.constexpr, LAST: tl.constexpr):
    """One key block into the running max `m` and sum `l`; its log-sum-exp per row to scratch.
    Only the last block can run past the tokens, so only it is masked."""
    key = kb * BLOCK + tl.arange(0, BLOCK)
    if LAST:
        k = tl.load(k_base + key[None, :].to(tl.int64) * k_token, mask=key[None, :] < tokens, other=0.0)
        s = tl.where(key[None, :] < tokens, tl.dot(q, k) * scale_log2, float("-inf"))
    else:
        s = tl.dot(q, tl.load(k_base + key[None, :].to(tl.int64) * k_token)) * scale_log2
    m_new = tl.maximum(m, tl.max(s, 1))
    part = tl.sum(tl.exp2(s - m_new[:, None]), 1)
    tl.store(scratch + kb, m_new + tl.log2(part))
    return m_new, l * tl.exp2(m - m_new) + part


@triton.jit
def _block_mass(Q, K, SCRATCH, OUT, tokens, blocks, scale_log2, q_head, q_token, k_head, k_token,
                BLOCK: tl.constexpr, STEP: tl.constexpr, GROUP: tl.constexpr, DIM: tl.constexpr):
    ROWS: tl.constexpr = BLOCK // STEP          # measured rows per query block
    M: tl.constexpr = GROUP * ROWS               # rows per program
    program, head = tl.program_id(0), tl.program_id(1)
    first = program * GROUP
    i = tl.arange(0, M)
    start = (first + i // ROWS) * BLOCK
    row = start + (i % ROWS) * STEP + STEP // 2
    # A last block too short to have a row at STEP // 2 is measured on its first row.
    row = tl.where((i % ROWS == 0) & (row >= tokens), start, row)
    row_ok = row < tokens
    d = tl.arange(0, DIM)
    q = tl.load(Q + head.to(tl.int64) * q_head + row[:, None].to(tl.int64) * q_token + d[None, :],
                mask=row_ok[:, None], other=0.0)
    k_base = K + head.to(tl.int64) * k_head + d[:, None]
    scratch = SCRATCH + ((head.to(tl.int64) * tl.num_programs(0) + program) * M + i) * blocks

    # One pass over the keys: per row, the running max and sum of the online softmax (base 2),
    # and each key block's log-sum-exp, kept in scratch until the row's total is known.
    m = tl.full([M], float("-inf"), tl.float32)
    l = tl.zeros([M], tl.float32)
    for kb in range(0, blocks - 1):
        m, l = _key_block(q, k_base, k_token, kb, tokens, scale_log2, m, l, scratch, BLOCK, False)
    m, l = _key_block(q, k_base, k_token, blocks - 1, tokens, scale_log2, m, l, scratch, BLOCK, True)
    lse = m + tl.log2(l)

    # Rows past the end weigh nothing; each block's sum is divided by its own count of rows.
    weight = tl.where(row_ok, 1.0, 0.0)
    count = tl.maximum(tl.sum(tl.reshape(weight, [GROUP, ROWS]), 1), 1.0)
    out = OUT + (head.to(tl.int64) * blocks + first + tl.arange(0, GROUP)) * blocks
    block_ok = first + tl.arange(0, GROUP) < blocks
    for kb in range(0, blocks):
        per_row = tl.exp2(tl.load(scratch + kb) - lse) * weight
        tl.store(out + kb, tl.sum(tl.reshape(per_row, [GROUP, ROWS]), 1) / count, mask=block_ok)


# Scratch is rows × blocks floats per head; heads go in groups that keep it under this.
SCRATCH_BYTES = 1 << 30
# Launch parameters and rows per program, by measurement on an H100 (docs/calibration.md section 8).
LAUNCH = {"num_warps": 8, "num_stages": 2}
ROWS_PER_PROGRAM = 128


def block_mass(q, k, block, scale=None, step=1):
    """(H, N, D) queries and keys → (H, B, B) float32 block attention mass, B = ceil(N / block);
    `step` > 1 measures every step-th row of each query block."""
    heads, tokens, dim = q.shape
    if k.shape != q.shape or q.stride(2) != 1 or k.stride(2) != 1:
        raise ValueError(f"q and k must be (H, N, D) with unit stride along D, got {tuple(q.shape)}, {tuple(k.shape)}")
    rows = block // step
    if block % step or rows & (rows - 1) or dim & (dim - 1) or dim < 16:
        raise ValueError(f"block / step must be a power of two and head_dim a power of two ≥ 16 (block {block}, step {step}, head_dim {dim})")
    scale = dim ** -0.5 if scale is None else scale
    blocks = (tokens + block - 1) // block
    group = max(1, ROWS_PER_PROGRAM // rows)
    programs = triton.cdiv(blocks, group)
    out = torch.empty(heads, blocks, blocks, dtype=torch.float32, device=q.device)
    per_head = programs * group * rows * blocks * 4
    at_once = max(1, min(heads, SCRATCH_BYTES // per_head))
    scratch = torch.empty(at_once * per_head // 4, dtype=torch.float32, device=q.device)
    for h in range(0, heads, at_once):
        n = min(at_once, heads - h)
        _block_mass[(programs, n)](q[h:h + n], k[h:h + n], scratch, out[h:h + n], tokens, blocks, scale * math.log2(math.e),
                                   q.stride(0), q.stride(1), k.stride(0), k.stride(1),
                                   BLOCK=block, STEP=step, GROUP=group, DIM=dim, **LAUNCH)
    return out


@triton.jit
def _row_l1(MASS_T, OUT, blocks, TILE: tl.constexpr):
    ti, tj, head = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    if tj < ti:  # only pairs i < j are read
        return
    i = ti * TILE + tl.arange(0, TILE)
    j = tj * TILE + tl.arange(0, TILE)
    base = MASS_T + head.to(tl.int64) * blocks * blocks
    acc = tl.zeros([TILE, TILE], tl.float32)
    # Key block by key block, an outer difference of two columns (contiguous in the transpose).
    for kb in range(0, blocks):
        a = tl.load(base + kb * blocks + i, mask=i < blocks, other=0.0)
        b = tl.load(base + kb * blocks + j, mask=j < blocks, other=0.0)
        acc += tl.abs(a[:, None] - b[None, :])
    out = OUT + head.to(tl.int64) * blocks * blocks + i[:, None] * blocks + j[None, :]
    tl.store(out, acc, mask=(i[:, None] < blocks) & (j[None, :] < blocks))


def rows_within(mass, pairs, tolerance):
    """(H, B, B) float32 block mass → (H, P) bool: for each pair (pairs[0][p], pairs[1][p]) of query
    blocks, whether the L1 distance of their rows is ≤ tolerance, decided as calibc's C kernel
    decides it (differences and sum in float64). The distances are summed in float32 first; only
    pairs within float32's error bound of the tolerance are summed again in float64."""
    heads, blocks, _ = mass.shape
    out = torch.empty(heads, blocks, blocks, dtype=torch.float32, device=mass.device)
    tiles = triton.cdiv(blocks, 64)
    _row_l1[(tiles, tiles, heads)](mass.transpose(1, 2).contiguous(), out, blocks, TILE=64, num_warps=4)
    distance = out[:, pairs[0], pairs[1]]
    # Each of the B float32 differences and additions is off by at most 2^-24 relative, of terms
    # and partial sums no larger than 2 (two rows of mass 1): B · 2 · 2^-23 bounds the error.
    margin = blocks * 2.0 ** -22
    within = distance <= tolerance
    near = ((distance - tolerance).abs() <= margin).nonzero()
    if len(near):
        h, p = near[:, 0], near[:, 1]
        exact = (mass[h, pairs[0][p]].double() - mass[h, pairs[1][p]].double()).abs().sum(-1)
        within[h, p] = exact <= tolerance
    return within
