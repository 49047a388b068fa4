"""calibc inside diffusers' WanTransformer3DModel: the sparse attention processor and the recorder.

    from calibc.diffusers import CalibAttention, Calibrator, Recorder
"""

from .hooks import Intercept, StepCounter, wrap_self_attention
from .processor import CalibAttention
from .recorder import Calibrator, Recorder
from .tiny import denoise, tiny_wan

__all__ = ["CalibAttention", "Calibrator", "Intercept", "Recorder", "StepCounter", "denoise", "tiny_wan",
           "wrap_self_attention"]
