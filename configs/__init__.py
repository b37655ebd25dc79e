"""The Hydra config tree of nntrain (installed as nntrain.configs so Hydra finds it via pkg://)."""
