"""hydra-optuna-sweeper's `_target_` answered by nntrain's sweeper, while that plugin is absent.

Configs written for hydra-optuna-sweeper (lightning-hydra-template's hparams_search configs too)
name its class, `hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper`, as the
sweeper's `_target_`. Hydra looks a sweeper class up by that name in the plugin registry it built
when it scanned the plugins; without the plugin the name is unknown and Hydra ends with a
traceback. This plugin runs once Hydra has scanned (a search-path plugin is called as the config
is loaded, before any sweeper is made) and lets the name lead to nntrain's sweeper. With
hydra-optuna-sweeper installed it does nothing: its own class answers.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from .config import UPSTREAM_PACKAGE, upstream_plugin_installed

UPSTREAM_CLASS = f"{UPSTREAM_PACKAGE}.optuna_sweeper.OptunaSweeper"


class UpstreamOptunaTarget(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Adds no config path: registers the upstream class name, once plugins are scanned."""
        if upstream_plugin_installed():
            return
        from .optuna_sweeper import NntrainOptunaSweeper

        registry = Plugins.instance().class_name_to_class
        registry.setdefault(UPSTREAM_CLASS, NntrainOptunaSweeper)
