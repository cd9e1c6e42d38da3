"""What the command line offers about models, importable without torch: the published formats
``atrous convert --from`` reads (each one :class:`~atrous.models.convert.core.SourceFormat`
record of :mod:`atrous.models.convert`, which a test checks against these names)."""

CONVERT_FORMATS = ("denseaspp-official", "torchvision-deeplabv3")
