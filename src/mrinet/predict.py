"""`python -m mrinet.predict`: the command lives in mrinet.cli.predict; kept under this name for
scripts and notebooks written against it."""

from mrinet.cli.predict import (
    MASKS,
    check_context,
    choose_source,
    dice_against_labels,
    main,
    predict,
    predict_subject,
    subject_classes,
    voxel_mask,
)

__all__ = [
    "MASKS",
    "check_context",
    "choose_source",
    "dice_against_labels",
    "main",
    "predict",
    "predict_subject",
    "subject_classes",
    "voxel_mask",
]

if __name__ == "__main__":
    main()
