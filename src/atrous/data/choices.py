"""What the command line offers about data, importable without torch: the splits a config's
``data`` section can describe (``data.train``, ``data.val``, ``data.test``)."""

SPLIT_SECTIONS = ("train", "val", "test")
