"""calibc inside diffusers' WanTransformer3DModel: the sparse attention processor, the recorder
and the calibrator.

    from calibc.diffusers import CalibAttention, Calibrator, Recorder
"""

from .calibrator import Calibrator
from .hooks import Intercept, Timesteps, wrap_self_attention
from .processor import CalibAttention
from .recorder import Recorder

__all__ = ["CalibAttention", "Calibrator", "Intercept", "Recorder", "Timesteps", "wrap_self_attention"]
