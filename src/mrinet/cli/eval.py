"""Evaluate a checkpoint on the test split: python -m mrinet.eval ckpt_path=.../best.ckpt

The model and data settings come from the checkpoint itself (written by mrinet.train);
`data.*` overrides on the command line are applied on top (e.g. data.subjects_dir=/other).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mrinet.errors import CheckpointError
from mrinet.run.entry import (
    announce,
    apply_extras,
    check_accelerator,
    hydra_command,
    instantiate_list,
    register_resolvers,
    scalar_metrics,
    write_json,
)

log = logging.getLogger("mrinet.eval")
register_resolvers()


def command_line_overrides(prefix: str) -> dict:
    """The user's `prefix.key=value` overrides of this run, as a nested dict."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():
        return {}
    parsed = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    dotlist = {
        o.key_or_group: o.value()
        for o in parsed
        if o.key_or_group.startswith(prefix + ".") and not o.is_delete()
    }
    nested = OmegaConf.create({})
    for key, value in dotlist.items():
        OmegaConf.update(nested, key[len(prefix) + 1 :], value, force_add=True)
    return OmegaConf.to_container(nested)


def chosen_data_group(cfg: DictConfig) -> str | None:
    """The `_target_` of a `data=<group>` the user chose on the command line (None if none)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    chosen = [
        o for o in HydraConfig.get().overrides.task if o.split("=", 1)[0].lstrip("+~") == "data"
    ]
    return str(cfg.data.get("_target_")) if chosen else None


def check_data_overrides(
    trained: dict, overrides: dict, chosen_target: str | None, ckpt_path
) -> None:
    """Data given on the command line must be of the kind the checkpoint was trained on."""
    target = trained.get("_target_")
    if chosen_target is not None and chosen_target != target:
        raise CheckpointError(
            f"the checkpoint was trained on {target}, not {chosen_target} (the data= choice)",
            ckpt_path,
            "drop the data= override (eval reads the data settings from the checkpoint), "
            "or use a checkpoint trained on that data",
        )
    unknown = sorted(set(overrides) - set(trained))
    if unknown:
        raise CheckpointError(
            f"data.{unknown[0]} is not a setting of {target}, the data this checkpoint was "
            f"trained on (its settings: {sorted(trained)})",
            ckpt_path,
            "override only settings of that data (e.g. data.subjects_dir for DTI, "
            "data.recon_dir for reconstructions), or use a checkpoint trained on your data",
        )


def evaluate(cfg: DictConfig) -> dict:
    """Test the checkpointed model on its data (plus overrides); writes metrics.json."""
    apply_extras(cfg)
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    # lazy: run.checkpoints imports torch; keeps `mrinet-eval --help` start-up fast
    from mrinet.run.checkpoints import build_model, checkpoint_datamodule, load_checkpoint

    checkpoint = load_checkpoint(cfg.ckpt_path)
    info = checkpoint["mrinet"]
    pl.seed_everything(info.get("seed", cfg.seed), workers=True)
    overrides = command_line_overrides("data")
    check_data_overrides(info["data"], overrides, chosen_data_group(cfg), cfg.ckpt_path)
    data_cfg = OmegaConf.merge(info["data"], overrides)
    for key in ("features", "classes"):
        trained, asked = info["data"].get(key), data_cfg.get(key)
        if trained is not None and list(asked) != list(trained):
            raise CheckpointError(
                f"the checkpoint was trained with data.{key}={list(trained)}, not {list(asked)}",
                cfg.ckpt_path,
                f"drop the data.{key} override or use a checkpoint trained with those {key}",
            )
    datamodule = checkpoint_datamodule(checkpoint, data_cfg)
    model = build_model(checkpoint, cfg.ckpt_path)
    callbacks = [c for c in instantiate_list(cfg.get("callbacks"))]
    check_accelerator(cfg.trainer)
    trainer = instantiate(
        cfg.trainer, logger=instantiate_list(cfg.get("logger")) or False, callbacks=callbacks
    )
    trainer.test(model=model, datamodule=datamodule)
    metrics = scalar_metrics(trainer.callback_metrics, "test/")
    output_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        write_json(
            output_dir / "metrics.json",
            {
                "task_name": cfg.task_name,
                "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
                "seed": info.get("seed"),
                "test": metrics,
                "data": OmegaConf.to_container(data_cfg),
            },
        )
        announce(output_dir)
    return metrics


main = hydra_command("eval", evaluate)


if __name__ == "__main__":
    main()
