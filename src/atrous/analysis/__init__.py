"""The papers' analyses on a trained model: receptive fields, feature similarity, block removal,
object size, output stride, confusion, training curves and overlays (``atrous analyze``)."""

# What the effective receptive field is the gradient of (``atrous analyze receptive-field --target``):
# the logit of the class predicted at the centre, or the sum of all logits there. Defined here, with
# no imports, so the command line can offer the choices without loading the analysis modules.
ERF_TARGETS = ("predicted", "sum")
