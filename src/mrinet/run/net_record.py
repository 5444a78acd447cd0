"""The composed config records the net as built: its own arguments plus the data's sizes."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict


def record_built_net(cfg: DictConfig, model) -> None:
    """Replace cfg.model.net (a `_partial_` factory config) by the config that builds the very
    net the model holds (in_features/in_channels, num_classes filled in from the DataSpec), so
    the checkpoint's run information, the logged hyperparameters and eval/predict see it."""
    # lazy: imports torch; keeps `mrinet-train --help` start-up fast
    from mrinet.models.net_builder import recorded_net_config  # torch: not at --help time

    sizes = getattr(model, "net_sizes", None)
    net_cfg = OmegaConf.select(cfg, "model.net")
    if not sizes or not isinstance(net_cfg, DictConfig):
        return
    built = recorded_net_config(OmegaConf.to_container(net_cfg, resolve=True), sizes)
    with open_dict(cfg):
        cfg.model.net = OmegaConf.create(built)
