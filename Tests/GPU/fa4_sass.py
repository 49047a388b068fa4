#!/usr/bin/env python3
"""FlashAttention-4's Hopper forward compiled for sm_90a on a machine without a GPU (issue 29:
docs/gpu.md "FA4's loop beside calibc's"), with the settings flash_attn.cute's interface picks on
sm90 for bf16, head_dim 128, no causal mask, no block sparsity; writes its cubin. The CUTLASS DSL
compiles the whole way (NVVM and its own ptxas) when CUTE_DSL_ARCH pins the target, and never
loads a driver; the tensors only give it layouts, so CPU ones of the Wan 1.3B shape do.
usage: python fa4_sass.py OUT.cubin   (make sass-loops sets up the wheels)"""
import math, os, sys, tempfile, types

# The target, pinned (no device to ask), and the cubin kept (the DSL drops it otherwise).
os.environ.setdefault("CUTE_DSL_ARCH", "sm_90a")
os.environ["CUTE_DSL_KEEP"] = "cubin"
dump = tempfile.TemporaryDirectory()  # removed at exit
os.environ["CUTE_DSL_DUMP_DIR"] = dump.name

import torch
import torch._dynamo

# quack's autotuner imports triton at import time, for a cache class and a benchmark function
# this compile never calls; torch and its compiler are imported first, so they do not see the
# stand-in (torch._dynamo takes any triton module for the real one).
sys.modules.setdefault("triton", types.SimpleNamespace(
    runtime=types.SimpleNamespace(cache=types.SimpleNamespace(FileCacheManager=object)),
    testing=types.SimpleNamespace(do_bench=None)))

import cutlass
import cutlass.cute as cute
from flash_attn.cute import interface
from flash_attn.cute.cute_dsl_utils import to_cute_tensor
from flash_attn.cute.flash_fwd_sm90 import FlashAttentionForwardSm90
from flash_attn.cute.utils import AuxData

B, S, H, D = 1, 32768, 12, 128
tile = interface._tile_size_fwd_sm90(D, D, False, False)
kernel = FlashAttentionForwardSm90(
    cutlass.BFloat16, D, D, 1, is_causal=False, is_local=False, pack_gqa=False,
    tile_m=tile.m_block_size, tile_n=tile.n_block_size, num_stages=2, num_threads=384, Q_in_regs=False,
    intra_wg_overlap=tile.intra_wg_overlap, mma_pv_is_rs=tile.mma_pv_is_rs, mask_mod=None, score_mod=None,
    has_aux_tensors=False, q_subtile_factor=1, paged_kv_non_tma=False)
q, k, v, o = (torch.empty(B, S, H, D, dtype=torch.bfloat16) for _ in range(4))
# CPU tensors carry no stream for TVM-FFI to find: an explicit stand-in changes only the host side.
stream = cute.runtime.make_fake_stream(use_tvm_ffi_env_stream=False)
compiled = cute.compile(kernel, *(to_cute_tensor(t) for t in (q, k, v)), to_cute_tensor(o, assumed_align=16),
                        to_cute_tensor(None, assumed_align=4), 1.0 / math.sqrt(D), *([None] * 8), None,
                        AuxData(None, None), None, None, stream, options="--enable-tvm-ffi")
with open(sys.argv[1], "wb") as f:
    f.write(compiled.__cubin__)
print(f"FA4 sm90 forward, tile {tile.m_block_size}×{tile.n_block_size}: {sys.argv[1]}")
