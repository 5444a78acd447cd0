"""Trivial-feature baseline for the recon-quality task, on the same data and volume split.

    PYTHONPATH=src python scripts/recon_quality_baseline.py [hydra overrides...]
        [--cnn-metrics logs/recon_quality_cnn/runs/<run>/metrics.json]

Composes `experiment=recon_quality_cnn` with the given overrides (so the data, split and seed
are those of the CNN run), fits logistic regression on image statistics, and prints its
accuracy next to the CNN's. Near chance (0.5 for two classes) means no easy shortcut.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.source=files")
    parser.add_argument("--cnn-metrics", type=Path, help="metrics.json of a recon_quality_cnn run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mrinet.analysis.recon_shortcuts import (
        FEATURE_NAMES,
        feature_baseline,
        grouped_cross_validation,
    )
    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "experiment=recon_quality_cnn",
                f"paths.root_dir={os.getcwd()}",
                "paths.output_dir=.",
                *args.overrides,
            ],
        )
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    splits = {name: datamodule.split_images(name) for name in datamodule.indexes}
    splits = {name: xy for name, xy in splits.items() if len(xy[1])}
    result = feature_baseline(splits, len(datamodule.classes))
    print(f"features: {', '.join(FEATURE_NAMES)}")
    print(f"images per split: { {k: len(v[1]) for k, v in splits.items()} }")
    print(f"{'':28s}{'acc':>8s}{'bal_acc':>9s}")
    for name in splits:
        label = f"logistic regression, {name}"
        print(f"{label:28s}{result[f'{name}/acc']:8.3f}{result[f'{name}/bal_acc']:9.3f}")
    names = list(splits)
    images = torch.cat([splits[name][0] for name in names])
    labels = torch.cat([splits[name][1] for name in names])
    volumes = [v for name in names for v in datamodule.indexes[name].volumes]
    cv = grouped_cross_validation(images, labels, volumes, len(datamodule.classes))
    label = f"leave-one-volume-out ({int(cv['cv/groups'])})"
    print(f"{label:28s}{cv['cv/acc']:8.3f}{cv['cv/bal_acc']:9.3f}")
    result |= cv
    if args.cnn_metrics:
        test = json.loads(args.cnn_metrics.read_text())["test"]
        print(f"{'CNN, test':28s}{test['test/acc']:8.3f}{test['test/bal_acc']:9.3f}")
    return result


if __name__ == "__main__":
    main()
