"""Write a simulated DTI cohort: one folder per subject (flat, or HCP 1200 as downloaded), resumable."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from mrinet.io.atomic import atomic_dir, remove_stale_temporaries
from mrinet.io.dwi import write_bvals_bvecs
from mrinet.io.nifti import save_nifti
from mrinet.sim.anatomy.atlas import load_atlas, load_wmparc, resolve_anatomy
from mrinet.sim.cpu_clock import CpuClock
from mrinet.sim.dti import load_preset, merge_params, simulate_subject
from mrinet.sim.phantom import phantom_affine

SUBJECT_FILES = (
    "data.nii.gz",
    "bvals",
    "bvecs",
    "nodif_brain_mask.nii.gz",
    "T1w.nii.gz",
    "aparc+aseg.nii.gz",
    "FA.nii.gz",
    "MD.nii.gz",
    "AD.nii.gz",
    "RD.nii.gz",
    "simulation.json",
)
# an HCP 1200 release subject as downloaded (no FA/MD maps: mrinet fits the tensors itself)
HCP_SUBJECT_FILES = (
    "T1w/Diffusion/data.nii.gz",
    "T1w/Diffusion/bvals",
    "T1w/Diffusion/bvecs",
    "T1w/Diffusion/nodif_brain_mask.nii.gz",
    "T1w/T1w_acpc_dc_restore_1.25.nii.gz",
    "T1w/aparc+aseg.nii.gz",
    "simulation.json",
)
LAYOUTS = ("flat", "hcp")


def finer_label_grid(labels: np.ndarray, affine: np.ndarray, factor: int = 2):
    """Labels on a grid `factor` times finer (each voxel split into factor^3, same label) and its
    affine: HCP's aparc+aseg is on the 0.7 mm T1w grid, finer than the 1.25 mm diffusion grid.
    Nearest-neighbour resampling back onto the original grid returns `labels` exactly."""
    fine = labels.repeat(factor, 0).repeat(factor, 1).repeat(factor, 2)
    scale = np.diag([1.0 / factor] * 3 + [1.0])
    scale[:3, 3] = (1.0 / factor - 1.0) / 2.0  # fine voxel centres inside each coarse voxel
    return fine, np.asarray(affine, dtype=np.float64) @ scale


def cohort_params(preset: str = "literature", **params) -> dict:
    """The full parameter set a cohort is simulated with: a preset updated by overrides."""
    return merge_params(load_preset(preset), params)


def _write_subject(
    folder: Path, params: dict, rng: np.random.Generator, meta: dict, layout: str = "flat"
) -> None:
    """Simulate one subject and write its files into `folder` (a fresh directory) in `layout`."""
    # lazy: the tensor fit imports torch; keeps `mrinet-simulate-dti --help` start-up fast
    from mrinet.mri.dti import fit_tensor, select_volumes

    t0 = time.perf_counter()
    clock = CpuClock()
    sim = simulate_subject(params, rng, clock)
    affine = phantom_affine(sim["labels"].shape, float(params["grid"]["voxel_mm"]))
    dwi = sim["dwi"]
    if layout == "hcp":
        diffusion = folder / "T1w" / "Diffusion"
        diffusion.mkdir(parents=True)
        save_nifti(diffusion / "data.nii.gz", dwi, affine)
        write_bvals_bvecs(diffusion / "bvals", diffusion / "bvecs", sim["bvals"], sim["bvecs"])
        save_nifti(diffusion / "nodif_brain_mask.nii.gz", sim["mask"], affine, dtype=np.uint8)
        save_nifti(folder / "T1w" / "T1w_acpc_dc_restore_1.25.nii.gz", sim["t1w"], affine)
        fine, fine_affine = finer_label_grid(sim["labels"], affine)
        save_nifti(folder / "T1w" / "aparc+aseg.nii.gz", fine, fine_affine, dtype=np.int32)
        if "wmparc" in sim:
            fine = finer_label_grid(sim["wmparc"], affine)[0]
            save_nifti(folder / "T1w" / "wmparc.nii.gz", fine, fine_affine, dtype=np.int32)
        record = {**meta, "layout": "hcp", "params": params, "shape": list(sim["labels"].shape)}
        (folder / "simulation.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        return
    with clock("write DWI"):
        save_nifti(folder / "data.nii.gz", dwi, affine, fast_gzip=True)
    with clock("write other NIfTI"):
        write_bvals_bvecs(folder / "bvals", folder / "bvecs", sim["bvals"], sim["bvecs"])
        save_nifti(folder / "nodif_brain_mask.nii.gz", sim["mask"], affine, dtype=np.uint8)
        save_nifti(folder / "T1w.nii.gz", sim["t1w"], affine, dtype=np.float32)
        save_nifti(folder / "aparc+aseg.nii.gz", sim["labels"], affine, dtype=np.int32)
        if "wmparc" in sim:  # phantom.wmparc (anatomical phantom): FreeSurfer's wmparc.nii.gz
            save_nifti(folder / "wmparc.nii.gz", sim["wmparc"], affine, dtype=np.int32)

    # maps fitted from exactly the stored data, as a real pipeline would
    fit_cfg = params["fit"]
    keep = select_volumes(sim["bvals"], fit_cfg["max_bval"], fit_cfg["b0_threshold"])
    sub = dwi if keep.all() else dwi[..., keep]
    with clock("tensor fit"):
        bvals, bvecs = sim["bvals"][keep], sim["bvecs"][keep]
        fit = fit_tensor(sub, bvals, bvecs, fit_cfg["method"], sim["mask"])
    with clock("write other NIfTI"):
        for name in ("fa", "md", "ad", "rd"):
            save_nifti(
                folder / f"{name.upper()}.nii.gz", getattr(fit, name).numpy(), affine, np.float32
            )

    record = {
        **meta,
        "params": params,
        "shape": list(sim["labels"].shape),
        "n_volumes": int(sim["bvals"].size),
        "fit_volumes": int(keep.sum()),
        "units": {"MD/AD/RD": "um^2/ms", "bvals": "s/mm^2"},
        "axes": "X right->left, Y posterior->anterior, Z inferior->superior (affine RAS+ mm)",
        "seconds": round(time.perf_counter() - t0, 3),
        # CPU seconds per stage in the simulating process (scripts/bench_first_run.py)
        "cpu_seconds": clock.rounded(),
    }
    (folder / "simulation.json").write_text(json.dumps(record, indent=2, sort_keys=True))


def simulate_dti_cohort(
    out_dir: str | Path,
    subjects: int = 8,
    seed: int = 0,
    preset: str = "literature",
    layout: str = "flat",
    workers: int | None = None,
    progress: bool = True,
    **params,
) -> list[Path]:
    """Write `subjects` folders sub-000, sub-001, ... under out_dir; existing folders are kept.

    `workers` processes simulate subjects in parallel (None: `cohort_workers`, one per torch
    thread for the anatomical phantom; the subjects do not depend on it): this process and
    `workers - 1` started ones. `progress` draws a bar with the time left on stderr.

    `layout="hcp"` writes each as an HCP 1200 subject as downloaded (HCP_SUBJECT_FILES, labels
    on a 2x finer grid); `flat` (the default) one folder of maps, DWI and labels.

    Subject i is drawn from numpy's Generator seeded with (seed, i), so a rerun that resumes
    after an interruption, or asks for more subjects, gives the same subjects as a single run.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    out_dir = Path(out_dir)
    remove_stale_temporaries(out_dir)  # half-written subjects of a killed run
    full = cohort_params(preset, **params)
    paths = [out_dir / f"sub-{i:03d}" for i in range(int(subjects))]
    jobs = [(p, full, int(seed), i, preset, layout) for i, p in enumerate(paths) if not p.is_dir()]
    n_workers = cohort_workers(full, len(jobs)) if workers is None else int(workers)
    bar = CohortProgress(len(jobs)) if progress and jobs else None
    if n_workers > 1 and len(jobs) > 1:
        _write_in_parallel(jobs, min(n_workers, len(jobs)), bar)
    else:
        for job in jobs:
            _write_job(job)
            if bar is not None:
                bar.step()
    return paths


def _write_in_parallel(jobs: list, n_workers: int, bar: CohortProgress | None) -> None:
    """Write `jobs` in this process and `n_workers - 1` spawned ones: this process is started
    already (one interpreter and torch import fewer than a pool of n_workers), each worker keeps
    a job queued while several remain, so it never waits for this process's subject."""
    # lazy: start-up, only a cohort simulated in parallel needs these
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pending, running = deque(jobs), set()
    spawn = multiprocessing.get_context("spawn")  # no fork of a process running torch
    with ProcessPoolExecutor(n_workers - 1, mp_context=spawn) as pool:
        while pending or running:
            depth = 2 if len(pending) > n_workers else 1
            while pending and len(running) < depth * (n_workers - 1):
                running.add(pool.submit(_write_job, pending.popleft()))
            if pending:
                _write_job(pending.popleft(), here=True)
                if bar is not None:
                    bar.step()
                done = {f for f in running if f.done()}
            else:
                done = wait(running, return_when=FIRST_COMPLETED).done
            for future in done:
                future.result()  # a worker's error stops the cohort here
                running.discard(future)
                if bar is not None:
                    bar.step()
    load_atlas.cache_clear()  # the 1 mm atlas is not needed once the cohort is written
    load_wmparc.cache_clear()


class CohortProgress:
    """A text progress bar on stderr: subjects done, elapsed time and an estimate of the rest
    (redrawn in place on a terminal, one line per subject otherwise)."""

    def __init__(self, total: int, stream=None, width: int = 24) -> None:
        self.total, self.done, self.width = int(total), 0, width
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._draw()

    def step(self) -> None:
        """One more subject written."""
        self.done += 1
        self._draw()

    def line(self) -> str:
        """The bar as text, e.g. `simulating DTI cohort [######  ] 3/8 subjects, 9 s, ~12 s left`."""
        elapsed = time.perf_counter() - self.start
        filled = round(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        if self.done >= self.total:
            rest = "done"
        elif self.done:
            rest = f"~{elapsed / self.done * (self.total - self.done):.0f} s left"
        else:
            rest = "estimating the time left after the first subject"
        return (
            f"simulating DTI cohort [{bar}] {self.done}/{self.total} subjects, "
            f"{elapsed:.0f} s, {rest}"
        )

    def _draw(self) -> None:
        end = "\n" if not self.tty or self.done >= self.total else ""
        self.stream.write(("\r" if self.tty else "") + self.line() + end)
        self.stream.flush()


def cohort_workers(params: dict, n_subjects: int) -> int:
    """Processes that simulate a cohort: one per torch thread (so extras.num_threads=1 keeps
    one core), up to 4, for the anatomical phantom only (a geometric subject costs less than a
    process start)."""
    anatomy = (params.get("phantom") or {}).get("anatomy")
    if n_subjects < 2 or resolve_anatomy(anatomy) != "mni_aparc":
        return 1
    import torch

    return max(1, min(4, torch.get_num_threads(), n_subjects))


def _write_job(job, here: bool = False) -> Path:
    """Write one subject folder atomically (a process pool's unit of work; `here`: in the main
    process beside a pool, on one torch thread as the workers)."""
    import torch

    folder, full, seed, i, preset, layout = job
    threads = torch.get_num_threads()
    if threads > 1 and (here or multiprocessing_child()):
        torch.set_num_threads(1)  # the pool already uses the cores
    try:
        with atomic_dir(folder) as tmp:
            meta = {"preset": preset, "seed": seed, "subject": i, "rng": [seed, i]}
            _write_subject(tmp, full, np.random.default_rng([seed, i]), meta, layout)
    finally:
        if here:
            torch.set_num_threads(threads)
    return folder


def multiprocessing_child() -> bool:
    """Whether this is a worker process of a pool (not the main process)."""
    import multiprocessing

    return multiprocessing.parent_process() is not None


if __name__ == "__main__":  # the old command path; the command is mrinet.cli.simulate_dti
    from mrinet.cli.simulate_dti import run

    run()
