"""The test-time choices, importable without torch (the command line offers them): the named
strategies of :func:`~atrous.evaluation.inference.predict_probabilities`, how predictions are
averaged, and which labels a score compares against."""

from typing import Any

AVERAGES = ("probabilities", "log_probabilities")

# Named test-time strategies: keyword arguments of predict_probabilities / predict.
TTA_PRESETS: dict[str, dict[str, Any]] = {
    "none": {"scales": (1.0,), "flip": False},
    # DeepLabv3 §4.3 ("Inference strategy on val set", Tables 4 and 6): "multi-scale inputs (with
    # scales = {0.5, 0.75, 1.0, 1.25, 1.5, 1.75}) and also left-right flipped images [...] we
    # compute as the final result the average probabilities from each scale and flipped images".
    "deeplabv3": {"scales": (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), "flip": True},
    # Official DenseASPP inference.py (DeepMotionAIResearch/DenseASPP, since commit 435d01d "fix
    # bug in multiscale inference"): inf_scales = [0.5, 0.75, 1.0, 1.25, 1.5, 1.8], each scale and
    # its left-right flip, the mean of F.log_softmax over the twelve predictions. (It resizes the
    # uint8 image with PIL's bicubic filter; here the normalised tensor is resized bilinearly.)
    "denseaspp-official": {
        "scales": (0.5, 0.75, 1.0, 1.25, 1.5, 1.8), "flip": True, "average": "log_probabilities",
    },
}

# Score against the label maps as on disk, or resized with the images (``--labels``).
LABELS = ("original", "resized")

# The largest input a test-time strategy may make for the model (a window, an image scaled up),
# unless --max-pixels (evaluate.max_pixels) says otherwise: 4096 x 8192, a full 1024x2048
# Cityscapes frame at scale 4 (the presets' largest scale is 1.8). A 64x128 image at --scales 100,
# or padded to --window 8000 8000, is refused instead of allocating tens of GB.
MAX_INPUT_PIXELS = 4096 * 8192
