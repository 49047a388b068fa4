"""calibc inside diffusers' WanTransformer3DModel: the sparse attention processor and the recorder.

    from calibc.diffusers import CalibAttention, Recorder
"""

from .hooks import Intercept, StepCounter, wrap_self_attention
from .processor import CalibAttention
from .recorder import Recorder, block_mass
from .tiny import denoise, tiny_wan

__all__ = ["CalibAttention", "Intercept", "Recorder", "StepCounter", "block_mass", "denoise", "tiny_wan",
           "wrap_self_attention"]
