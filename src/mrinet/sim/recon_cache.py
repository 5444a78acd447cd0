"""The simulated recon-quality data as a cache: k-space simulated and reconstructed once
(by mrinet.recon, the same pipeline a user runs on real k-space)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from mrinet.io.atomic import atomic_dir
from mrinet.io.integrity import manifest_problems, remove_tree, write_manifest
from mrinet.io.locks import cache_lock
from mrinet.recon.driver import reconstruct_dataset
from mrinet.sim.kspace_dataset import simulate_kspace_dataset

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
    sim = dict(params.get("simulation", {}))
    with atomic_dir(target) as tmp:
        simulate_kspace_dataset(tmp / "kspace", **sim)
        for recon in params.get("reconstructions", []):
            reconstruct_dataset(tmp / "kspace", tmp / "recon", **dict(recon))
        (tmp / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True))
        write_manifest(tmp)  # sizes and checksums: a later corruption is found, not read
    return target / "recon"
