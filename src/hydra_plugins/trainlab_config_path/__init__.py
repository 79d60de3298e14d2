"""TRAINLAB_CONFIG_PATH's folders on Hydra's config search path, after trainlab's conf/: Hydra calls every
SearchPathPlugin when it builds a search path (hydra.main of train.py, evaluate.py, predict.py, and the compose
API's initialize_config_dir), so the user's options are found the same way everywhere."""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from trainlab.config_folders import from_env


class TrainlabConfigPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for folder in from_env():
            search_path.append(provider=folder.origin, path=folder.entry)
