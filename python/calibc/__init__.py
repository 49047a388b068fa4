"""calibc for PyTorch: compiled calibrated sparse attention kernels (see docs/python.md).

    import calibc
    kernels = calibc.load("kernels/libcalibkernels.so")
    out = calibc.attention_layer(q, k, v, kernels.path, step, layer)    # torch.ops.calibc.attention_layer
    out = calibc.attention_at(q, k, v, kernels.path, timestep, layer)   # the step nearest the model timestep
    masks = calibc.Masks.read("masks.json")
    block_mask = calibc.to_block_mask(masks, step, layer)

The diffusers processor, recorder and calibrator are in `calibc.diffusers` (needs diffusers).
"""

from ._abi import ABI_VERSION
from .artifact import Artifact
from .cuda import CudaKernels, load_cuda
from .blockmask import from_block_mask, from_block_masks, to_block_mask
from .kernels import CalibError, Kernels, load
from .masks import Masks, MasksError, Pattern
from .ops import attention_at, attention_layer, dense_attention_layer

__version__ = "0.1.0"

__all__ = ["ABI_VERSION", "Artifact", "CalibError", "CudaKernels", "Kernels", "load_cuda", "Masks", "MasksError", "Pattern", "attention_at", "attention_layer",
           "dense_attention_layer", "from_block_mask", "from_block_masks", "load", "to_block_mask"]
