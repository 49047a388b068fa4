"""calibc inside diffusers' video transformers (models.py: Wan 2.1 and 2.2, LTX-Video): the
sparse attention processor, the recorder and the calibrator.

    from calibc.diffusers import CalibAttention, Calibrator, Recorder
"""

from .calibrator import Calibrator
from .models import ModelError
from .hooks import Intercept, Timesteps, wrap_self_attention
from .processor import CalibAttention
from .recorder import Recorder

__all__ = ["CalibAttention", "Calibrator", "Intercept", "ModelError", "Recorder", "Timesteps", "wrap_self_attention"]
