"""atrous — multi-scale semantic segmentation with atrous convolution (DenseASPP, DeepLabv3).

The names below import their modules (and torch) on first use, so ``import atrous`` and the
command line's ``--help`` start at once.
"""

from typing import TYPE_CHECKING

from .config import ConfigError, load_config
from .lazy import lazy_attributes

if TYPE_CHECKING:
    from .models.api import create_model, list_encoders, list_models, model_config, save_config
    from .models.build import build_model
    from .models.pretrained import Pretrained, load_pretrained
    from .models.published import PUBLISHED_WEIGHTS, PublishedWeights
    from .models.segmentor import Segmentor

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

__getattr__, __dir__ = lazy_attributes(__name__, {
    "PUBLISHED_WEIGHTS": ".models.published",
    "Pretrained": ".models.pretrained",
    "PublishedWeights": ".models.published",
    "Segmentor": ".models.segmentor",
    "build_model": ".models.build",
    "create_model": ".models.api",
    "list_encoders": ".models.api",
    "list_models": ".models.api",
    "model_config": ".models.api",
    "save_config": ".models.api",
    "load_pretrained": ".models.pretrained",
})
