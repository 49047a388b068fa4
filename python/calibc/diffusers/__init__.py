"""calibc inside diffusers' video transformers (models.py: Wan 2.1 and 2.2, LTX-Video): the
sparse attention processor, the recorder and the calibrator.

    from calibc.diffusers import CalibAttention, Calibrator, Recorder
"""

try:
    import diffusers  # noqa: F401  (the extra this subpackage needs, named where it is missing)
except ModuleNotFoundError as e:
    raise ModuleNotFoundError("calibc.diffusers needs diffusers, the package's [diffusers] extra: "
                              "pip install 'calibc[diffusers]' (from a checkout: pip install './python[diffusers]')",
                              name=e.name) from None

from .calibrator import Calibrator
from .models import ModelError
from .hooks import Intercept, Timesteps, wrap_self_attention
from .processor import CalibAttention
from .recorder import Recorder

__all__ = ["CalibAttention", "Calibrator", "Intercept", "ModelError", "Recorder", "Timesteps", "wrap_self_attention"]
