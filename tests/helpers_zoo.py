"""Every config shipped with atrous (configs/**/*.yaml), and the test ids that name them."""

from __future__ import annotations

from atrous.config import config_name, list_configs

ZOO = list_configs()
ZOO_IDS = [config_name(p) for p in ZOO]
