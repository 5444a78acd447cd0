"""Measure decision rules for DTI tissue maps on trained checkpoints: Dice per class per rule.

    PYTHONPATH=src python scripts/dti_decision_rule.py CKPT [CKPT ...]

For each checkpoint (its own data settings, splits and seed), the validation and test logits
are turned into classes by: plain argmax; argmax after logit adjustment (-log class weight,
undoing an inverse-frequency weighted loss); argmax after per-class offsets tuned on the
validation split to maximise macro Dice (starting from the adjusted logits). Test Dice per
class is printed for each rule: the measurement behind the README's choice of rule.
"""

from __future__ import annotations

import argparse
import logging

import torch


def logits_of(model, x: torch.Tensor, batch: int = 262144) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(chunk) for chunk in x.split(batch)])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpts", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from mrinet.models.decision import tune_offsets, weighting_offsets
    from mrinet.models.metrics import batch_confusion, confusion_metrics
    from mrinet.run.checkpoints import build_model, checkpoint_datamodule, load_checkpoint

    rows = []
    for path in args.ckpts:
        checkpoint = load_checkpoint(path)
        model = build_model(checkpoint, path)
        datamodule = checkpoint_datamodule(checkpoint)
        datamodule.setup("test")
        names = list(datamodule.classes)
        logits = {s: logits_of(model, datamodule.data[s]["x"]) for s in ("val", "test")}
        ys = {s: datamodule.data[s]["y"] for s in ("val", "test")}
        weight = model.class_weight if model.class_weight.numel() else torch.ones(len(names))
        adjusted = weighting_offsets(weight)
        rules = {
            "argmax": torch.zeros(len(names)),
            "logit adjustment": adjusted,
            "tuned on val": tune_offsets(logits["val"], ys["val"], start=adjusted),
        }
        if model.logit_offset.numel():
            rules["checkpoint's"] = model.logit_offset.clone()
        print(f"\n{path}  (class weights: {[round(float(w), 2) for w in weight]})")
        print(
            f"{'rule':18s} {'offsets':>22s} "
            + " ".join(f"{n[:14]:>14s}" for n in names)
            + f" {'macro':>7s} {'val macro':>9s} {'WM->thal':>9s}"
        )
        for rule, offsets in rules.items():
            out = {}
            for split in ("val", "test"):
                pred = (logits[split] + offsets).argmax(1)
                out[split] = confusion_metrics(batch_confusion(pred, ys[split], len(names)), names)
            test = out["test"]
            pred = (logits["test"] + offsets).argmax(1)
            if "thalamus" in names and "cortical_wm" in names:
                wm = ys["test"] == names.index("cortical_wm")
                called = float((pred[wm] == names.index("thalamus")).float().mean())
                test = {**test, "wm_called_thalamus": torch.tensor(called)}
            cells = " ".join(f"{float(test[f'dice_{n}']):14.3f}" for n in names)
            off = ",".join(f"{float(o):+.2f}" for o in offsets)
            print(
                f"{rule:18s} {off:>22s} {cells} {float(test['dice_macro']):7.3f} {float(out['val']['dice_macro']):9.3f} {float(test.get('wm_called_thalamus', -1)):9.4f}"
            )
            rows.append({"ckpt": path, "rule": rule, **{k: float(v) for k, v in test.items()}})
    return rows


if __name__ == "__main__":
    main()
