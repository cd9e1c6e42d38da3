"""atrous — multi-scale semantic segmentation with atrous convolution (DenseASPP, DeepLabv3)."""

from .config import ConfigError, load_config
from .models import Segmentor, build_model

__version__ = "0.1.0"
__all__ = ["ConfigError", "Segmentor", "__version__", "build_model", "load_config"]
