"""Where a subject's files live: a flat folder, or an HCP 1200 release subject as downloaded.

`flat`: `<subject>/{data.nii.gz, bvals, bvecs, nodif_brain_mask.nii.gz, T1w.nii.gz, FA..RD,
aparc+aseg.nii.gz}` (mrinet's simulator, FSL-style folders).
`hcp`: `<id>/T1w/Diffusion/{data.nii.gz, bvals, bvecs, nodif_brain_mask.nii.gz}`,
`<id>/T1w/T1w_acpc_dc_restore_1.25.nii.gz` (T1w on the diffusion grid) and
`<id>/T1w/aparc+aseg.nii.gz` on the 0.7 mm T1w grid (resampled to the diffusion grid by nearest
neighbour when read). FreeSurfer's own `<id>/T1w/<id>/mri/aparc+aseg.mgz` is found too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mrinet.errors import ConfigError, DataNotFoundError
from mrinet.io.subjects import find_label_file


@dataclass(frozen=True)
class SubjectLayout:
    """Paths of one subject's files, relative to its folder."""

    name: str
    dwi: str
    bvals: str
    bvecs: str
    brain_mask: str
    t1w: str
    labels_dir: str  # the label volume is `<labels_dir>/<data.label_file>`
    maps_dir: str  # feature maps (FA, MD, ... or dtifit outputs) when present
    labels_on_diffusion_grid: bool

    def label_path(self, subject_dir: Path, label_file: str) -> Path:
        """The label volume: `<labels_dir>/<label_file>`, or FreeSurfer's `<id>/mri/` copy."""
        path = find_label_file(subject_dir / self.labels_dir / label_file)
        if not path.is_file() and self.name == "hcp":
            freesurfer = find_label_file(
                subject_dir / self.labels_dir / subject_dir.name / "mri" / label_file
            )
            if freesurfer.is_file():
                return freesurfer
        return path


FLAT = SubjectLayout(
    "flat", "data.nii.gz", "bvals", "bvecs", "nodif_brain_mask.nii.gz", "T1w.nii.gz", "", "", True
)
HCP = SubjectLayout(
    "hcp",
    "T1w/Diffusion/data.nii.gz",
    "T1w/Diffusion/bvals",
    "T1w/Diffusion/bvecs",
    "T1w/Diffusion/nodif_brain_mask.nii.gz",
    "T1w/T1w_acpc_dc_restore_1.25.nii.gz",
    "T1w",
    "T1w/Diffusion",
    False,
)
LAYOUTS = {"flat": FLAT, "hcp": HCP}


def get_layout(name: str) -> SubjectLayout:
    """`flat` or `hcp` -> its SubjectLayout (ConfigError naming data.layout otherwise)."""
    if name not in LAYOUTS:
        raise ConfigError(
            f"unknown subject folder layout {name!r}",
            "data.layout",
            f"use one of {sorted(LAYOUTS)} (hcp: an HCP 1200 subject as downloaded)",
        )
    return LAYOUTS[name]


def check_hcp_subject(
    subject_dir: str | Path, label_file: str | None = "aparc+aseg.nii.gz"
) -> None:
    """Every file an HCP subject needs is there (the labels unless `label_file` is None); else
    name the first missing one and the fix."""
    subject_dir = Path(subject_dir)
    if not subject_dir.is_dir():
        raise DataNotFoundError(
            "HCP subject folder not found", subject_dir, "give the folder named by the subject id"
        )
    needed = [HCP.dwi, HCP.bvals, HCP.bvecs, HCP.brain_mask, HCP.t1w]
    paths = [subject_dir / rel for rel in needed]
    if label_file is not None:
        paths.append(HCP.label_path(subject_dir, label_file))
    for path in paths:
        if not path.is_file():
            raise DataNotFoundError(
                f"HCP subject {subject_dir.name} has no {path.relative_to(subject_dir)}",
                path,
                "download the subject's 'Diffusion Preprocessed' and 'Structural Preprocessed' "
                "packages (unzipped as <id>/T1w/...), or use data.layout=flat for one folder "
                "per subject",
            )
