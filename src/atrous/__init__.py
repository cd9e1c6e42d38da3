"""atrous — multi-scale semantic segmentation with atrous convolution (DenseASPP, DeepLabv3)."""

from .config import ConfigError, load_config
from .models import Segmentor, build_model
from .models.api import create_model, list_encoders, list_models, model_config, save_config
from .models.pretrained import Pretrained, load_pretrained
from .models.published import PUBLISHED_WEIGHTS, PublishedWeights

__version__ = "0.1.0"
__all__ = [
    "PUBLISHED_WEIGHTS",
    "ConfigError",
    "Pretrained",
    "PublishedWeights",
    "Segmentor",
    "__version__",
    "build_model",
    "create_model",
    "list_encoders",
    "list_models",
    "model_config",
    "save_config",
    "load_config",
    "load_pretrained",
]
