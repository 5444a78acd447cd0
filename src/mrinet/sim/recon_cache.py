"""The simulated recon-quality data as a cache: k-space simulated and reconstructed once
(by mrinet.recon, the same pipeline a user runs on real k-space).

First use simulates and reconstructs volume by volume in one process pool (each worker one
torch thread): volume i's files do not depend on which process makes them or in which order
(its random draws are seeded by (seed, i), its mask and reference noise by its file name), so
the pool writes exactly what `simulate_kspace_dataset` then `reconstruct_dataset` would, with
the simulation spread over the cores instead of run before the reconstruction on one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mrinet.io.atomic import atomic_dir
from mrinet.io.integrity import manifest_problems, remove_tree, write_manifest
from mrinet.io.locks import cache_lock
from mrinet.recon.driver import RUN_SETTINGS, reconstruct_file
from mrinet.recon.protocol import ReconProtocol
from mrinet.sim.kspace_dataset import KspaceSimulation, prepare_out_dir, simulate_kspace_volume
from mrinet.utils.progress import progress as progress_bar

log = logging.getLogger(__name__)


def synthetic_recon_dir(cache_dir: str | Path, params: Mapping) -> Path:
    """Where the simulated + reconstructed dataset for these settings lives (hash of settings)."""
    key = json.dumps(dict(params), sort_keys=True)
    return Path(cache_dir) / hashlib.sha1(key.encode()).hexdigest()[:10]


def ensure_synthetic_recon(cache_dir: str | Path, params: Mapping) -> Path:
    """Simulate k-space and reconstruct it once (temporary folder, then rename); the recon dir.
    One process simulates, others started together wait for it (mrinet.io.locks)."""
    params = dict(params)
    target = synthetic_recon_dir(cache_dir, params)
    with cache_lock(target):
        return _ensure_recon(target, params)


def _ensure_recon(target: Path, params: dict) -> Path:
    if target.is_dir():
        problems = manifest_problems(target)
        if problems == {}:
            log.info("synthetic reconstructions: using cached %s", target)
            return target / "recon"
        for name, why in sorted((problems or {}).items()):
            log.warning("synthetic reconstruction cache file %s is %s", target / name, why)
        log.warning(
            "synthetic reconstruction cache %s %s: simulating it again",
            target,
            "does not match its manifest" if problems else "has no manifest (another version)",
        )
        remove_tree(target)
    log.info("synthetic reconstructions: simulating %s into %s", params, target)
    with atomic_dir(target) as tmp:
        build_synthetic_recon(
            tmp / "kspace",
            tmp / "recon",
            params.get("simulation", {}),
            params.get("reconstructions", []),
        )
        (tmp / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True))
        write_manifest(tmp)  # sizes and checksums: a later corruption is found, not read
    return target / "recon"


#: pool settings of a `reconstructions` entry (how, not what: the protocol is the rest)
POOL_SETTINGS = ("workers", "progress", "threads")


def build_synthetic_recon(
    kspace_dir: str | Path,
    recon_dir: str | Path,
    simulation: Mapping[str, Any],
    reconstructions: list[Mapping[str, Any]],
) -> None:
    """Simulate each volume (`simulate_kspace_volume`) and reconstruct it by every entry of
    `reconstructions` (`reconstruct_dataset` settings), one volume per job in a pool of the
    largest `workers` of the entries; the same files as simulating, then reconstructing."""
    settings = dict(simulation)
    volumes = int(settings.pop("volumes", 20))
    show = bool(settings.pop("progress", True))
    sim = KspaceSimulation(**settings)
    sim.contrasts  # noqa: B018 - a bad contrast is reported before anything is written
    jobs, workers = [], 1
    for entry in reconstructions:
        settings = dict(entry)
        workers = max(workers, int(settings.get("workers") or 1))
        show = show and bool(settings.get("progress", True))
        settings = {k: v for k, v in settings.items() if k not in POOL_SETTINGS}
        run = {key: settings.pop(key) for key in RUN_SETTINGS if key in settings}
        # every protocol is checked before the first volume is simulated
        jobs.append((ReconProtocol.from_settings(settings), run))
    if any(run.get("device", "cpu") != "cpu" for _, run in jobs):
        workers = 1
    prepare_out_dir(kspace_dir)
    args = [(Path(kspace_dir), Path(recon_dir), i, sim, jobs) for i in range(volumes)]
    title = "simulating and reconstructing k-space"
    if workers > 1 and volumes > 1:
        context = mp.get_context("spawn")
        with ProcessPoolExecutor(min(workers, volumes), mp_context=context) as pool:
            list(progress_bar(pool.map(_volume_job, args), title, volumes, show))
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # per-slice solves are small (as reconstruct_dataset's default)
    try:
        for job in progress_bar(args, title, volumes, show):
            _simulate_and_reconstruct(*job)
    finally:
        torch.set_num_threads(previous)


def _volume_job(args) -> Path:
    import torch

    torch.set_num_threads(1)  # one thread per worker process: workers share the cores
    return _simulate_and_reconstruct(*args)


def _simulate_and_reconstruct(kspace_dir, recon_dir, index, sim, jobs) -> Path:
    path = simulate_kspace_volume(kspace_dir, index, sim)
    for protocol, run in jobs:
        reconstruct_file(path, recon_dir, protocol, **run)
    return path
