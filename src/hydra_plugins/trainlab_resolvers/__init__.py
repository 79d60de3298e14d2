"""trainlab's `${trainlab.*}` resolvers, registered when Hydra scans its plugins (every `hydra.main` and every
`initialize_config_dir`/`initialize` of the compose API does): a notebook or test may compose conf/train.yaml and
resolve it before importing trainlab. Not a Hydra plugin itself; trainlab.config imports omegaconf only."""
import trainlab.config  # noqa: F401  (registers the resolvers on import)
