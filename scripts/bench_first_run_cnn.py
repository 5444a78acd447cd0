"""Where `make train-cnn`'s first use goes: simulating and reconstructing the recon-quality data.

    PYTHONPATH=src python scripts/bench_first_run_cnn.py [--volumes 6] [--profile-volumes 2]
        [--workers 2] [--skip-wall] [--train]

1. CPU seconds per volume (time.process_time, this process, one thread; each volume is one
   anatomical subject): the 1 mm atlas (once per process), the subject's images, the k-space
   (coils, noise, HDF5 file), the reconstruction set-up (mask, ESPIRiT maps, scaling), the R=1
   reference and the R=4 PI-CS solve; with the counts (slices, coils, iterations) they scale by.
   CPU seconds move less with the machine's load than wall seconds, but still do.
2. Wall seconds of generating the default data (configs/data/recon_quality.yaml; `--volumes` of
   its 20 volumes) both ways, in the same run: simulating every volume in this process and then
   reconstructing them in a pool (`simulate_kspace_dataset` + `reconstruct_dataset`, before),
   and one pool that simulates and reconstructs volume by volume (`build_synthetic_recon`,
   what first use runs now), both with this code's simulator; the outputs are compared file by
   file.
3. `--train`: `python -m mrinet.train experiment=recon_quality_cnn` from an empty data dir, wall.

The last line is the ratio of the two generation walls (before / now).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_synthetic() -> dict:
    """The `synthetic` block of configs/data/recon_quality.yaml."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "configs" / "data" / "recon_quality.yaml")
    return OmegaConf.to_container(cfg.synthetic, resolve=True)


def profile_volumes(sim: dict, recon: dict, volumes: int) -> dict[str, float]:
    """Mean CPU seconds per volume of each first-use stage (one thread, this process)."""
    import numpy as np
    import torch

    from mrinet.io.fastmri import read_kspace_volume
    from mrinet.mri.masks import seed_from_name
    from mrinet.recon.problem import VolumeRecon
    from mrinet.recon.protocol import ReconProtocol
    from mrinet.sim.kspace import anatomy_slices, draw_snr, phantom_slices
    from mrinet.sim.kspace_dataset import KspaceSimulation, simulate_kspace_volume

    torch.set_num_threads(1)
    cpu = time.process_time
    settings = {k: v for k, v in sim.items() if k not in ("volumes", "progress")}
    simulation = KspaceSimulation(**settings)
    protocol = ReconProtocol.from_settings(
        {k: v for k, v in recon.items() if k not in ("workers", "progress", "threads")}
    )
    stages = dict.fromkeys(("images", "kspace", "setup", "reference", "accelerated"), 0.0)
    t = cpu()
    if settings.get("anatomy") == "mni_aparc":
        from mrinet.sim.anatomy.atlas import load_atlas

        load_atlas()
    atlas = cpu() - t
    contrasts = simulation.contrasts
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(volumes):
            t = cpu()
            rng = np.random.default_rng([settings.get("seed", 0), i])  # the images alone
            slices_of = anatomy_slices if settings.get("anatomy") == "mni_aparc" else phantom_slices
            slices_of(320, settings["slices"], rng, contrasts[i % len(contrasts)])
            draw_snr(settings["snr"], rng)
            stages["images"] += cpu() - t
            t = cpu()
            path = simulate_kspace_volume(tmp, i, simulation)
            stages["kspace"] += cpu() - t
            kspace = torch.from_numpy(read_kspace_volume(path).kspace)
            t = cpu()
            problem = VolumeRecon(kspace, protocol, seed_from_name(path.stem), str(path))
            stages["setup"] += cpu() - t
            t = cpu()
            problem.reference()
            stages["reference"] += cpu() - t
            t = cpu()
            problem.accelerated()
            stages["accelerated"] += cpu() - t
    out = {name: value / volumes for name, value in stages.items()}
    out["kspace"] -= out["images"]  # simulate_kspace_volume made the images again
    out["atlas"] = atlas
    return out


def generation_walls(sim: dict, recons: list[dict]) -> tuple[float, float, bool]:
    """Wall seconds of the old (simulate, then reconstruct) and the new (one pool) generation,
    and whether they wrote the same reconstructions."""
    import h5py
    import numpy as np

    from mrinet.recon.driver import reconstruct_dataset
    from mrinet.sim.kspace_dataset import simulate_kspace_dataset
    from mrinet.sim.recon_cache import build_synthetic_recon

    with tempfile.TemporaryDirectory() as tmp:
        old, new = Path(tmp, "old"), Path(tmp, "new")
        t = time.perf_counter()
        simulate_kspace_dataset(old / "kspace", **sim)
        for recon in recons:
            reconstruct_dataset(old / "kspace", old / "recon", **recon)
        t_old = time.perf_counter() - t
        t = time.perf_counter()
        build_synthetic_recon(new / "kspace", new / "recon", sim, recons)
        t_new = time.perf_counter() - t
        files = sorted(p.relative_to(old) for p in old.rglob("*.h5"))
        same = files == sorted(p.relative_to(new) for p in new.rglob("*.h5"))
        for rel in files if same else []:
            with h5py.File(old / rel) as a, h5py.File(new / rel) as b:
                names: list[str] = []
                a.visit(names.append)
                for key in names:
                    if isinstance(a[key], h5py.Dataset):
                        same = same and np.array_equal(a[key][()], b[key][()])
    return t_old, t_new, same


def train_wall() -> float:
    """Wall seconds of the whole first use, in a fresh process from an empty data dir."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "mrinet.train",
            "experiment=recon_quality_cnn",
            f"paths.data_dir={tmp}/data",
            f"paths.log_dir={tmp}/logs",
            "callbacks.progress_bar.kind=none",
        ]
        t = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--volumes", type=int, default=6, help="volumes generated both ways (the config: 20)"
    )
    parser.add_argument("--profile-volumes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="default: the config's")
    parser.add_argument("--skip-wall", action="store_true", help="only the CPU profile")
    parser.add_argument("--train", action="store_true", help="also time the whole first use")
    args = parser.parse_args(argv)
    synthetic = default_synthetic()
    sim = {**synthetic["simulation"], "progress": False}
    sim["volumes"] = args.volumes
    recons = [{**r, "progress": False} for r in synthetic["reconstructions"]]
    if args.workers is not None:
        recons = [{**r, "workers": args.workers} for r in recons]
    recon = recons[0]

    cpu = profile_volumes(sim, recon, args.profile_volumes)
    slices, n = sim["slices"], sim["volumes"]
    per_volume = sum(v for k, v in cpu.items() if k != "atlas")
    print(
        f"{n} volumes x {slices} slices, {sim['coils']} coils, 320x320, anatomy "
        f"{sim.get('anatomy')}; PI-CS {recon['wavelet']} {recon['iterations']} iterations, "
        f"R={recon['acceleration']} and its R=1 reference; workers {recon.get('workers', 1)}"
    )
    print(f"CPU s, mean of {args.profile_volumes} volumes (one thread):")
    print(f"  atlas, once per process        {cpu['atlas']:6.2f}")
    print(f"  subject images per volume      {cpu['images']:6.2f}")
    print(f"  k-space + file per volume      {cpu['kspace']:6.2f}")
    print(f"  simulation per volume/subject  {cpu['images'] + cpu['kspace']:6.2f}")
    print(f"  recon set-up (ESPIRiT) / vol   {cpu['setup']:6.2f}")
    print(f"  reference R=1 per slice        {cpu['reference'] / slices:6.3f}")
    print(f"  PI-CS R=4 per slice            {cpu['accelerated'] / slices:6.3f}")
    print(f"  all stages per volume          {per_volume:6.2f}  (x {n} volumes)")
    if args.train:
        print(f"first use end to end (wall)      {train_wall():6.1f} s")
    if args.skip_wall:
        return 0.0
    t_old, t_new, same = generation_walls(sim, recons)
    print(f"generation wall, simulate then reconstruct  {t_old:6.1f} s")
    print(f"generation wall, one pool per volume        {t_new:6.1f} s  (same files: {same})")
    ratio = t_old / t_new
    print(f"generation before / now: {ratio:.2f}x")
    return ratio


if __name__ == "__main__":
    main()
