"""A deterministic toy objective run by mrinet's Optuna sweeper through real Hydra (tests).

`value(x, epoch)` rises with epoch towards 1 - (x - 0.7)^2: the worse x, the worse every epoch,
so a pruner stops the trials far from 0.7. Each epoch sleeps `epoch_s` (lengths per trial
differ with `epochs`), reports through the same TrialReporter the Lightning callback uses, and
the job writes trial.json + metrics.json as mrinet.train does, so summary.csv is the real one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mrinet.io.trial_file import write_trial_file
from mrinet.run.trial_report import TrialReporter


def value(x: float, epoch: int) -> float:
    return (1.0 - (x - 0.7) ** 2) * (1.0 - 0.5 ** (epoch + 1))


@hydra.main(version_base="1.3", config_path="conf", config_name="toy")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} above fail_above")
    reporter = TrialReporter.from_env()
    started = time.time()
    (run_dir / "times.json").write_text(json.dumps({"start": started, "pid": os.getpid()}))
    pruned, epochs, current = False, 0, float("nan")
    for epoch in range(int(cfg.epochs)):
        time.sleep(float(cfg.epoch_s))
        current, epochs = value(float(cfg.x), epoch), epoch + 1
        if reporter is not None and reporter.report(epoch, current):
            reporter.mark_pruned(epoch)
            pruned = True
            break
    write_trial_file(
        run_dir,
        {
            "trial": reporter.number if reporter else None,
            "epochs": epochs,
            "max_epochs": int(cfg.epochs),
            "last_value": current,
            "pruned": pruned,
            "accelerator": "cpu",
            "devices": 1,
            "train_s": time.time() - started,
        },
    )
    (run_dir / "times.json").write_text(
        json.dumps({"start": started, "end": time.time(), "pid": os.getpid()})
    )
    (run_dir / "metrics.json").write_text(
        json.dumps({"optimized_metric": "val/score", "optimized_value": current, "test": {}})
    )
    return current


if __name__ == "__main__":
    main()
