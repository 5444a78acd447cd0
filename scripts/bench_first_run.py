"""First run of `make train`: the DTI cohort simulation, in CPU seconds per stage and subject.

    PYTHONPATH=src python scripts/bench_first_run.py [--subjects 8] [--workers N] [--train]

Simulates the default cohort of `experiment=dti_mlp` (literature preset, anatomical phantom,
2 mm, seed 0) into a temporary folder with the default process split (`cohort_workers`), and
prints the CPU seconds of every stage per subject (`time.process_time` in the simulating
process, recorded in each subject's simulation.json: they hold on a loaded machine, wall time
does not), the CPU of this process and of its workers, and the wall time. `--train` then runs
`python -m mrinet.train experiment=dti_mlp` from an empty data dir in a fresh process (wall
time and the test macro Dice from its metrics.json; load-sensitive). Last line: the simulation's
CPU seconds per subject, all processes together.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def simulate(out: Path, subjects: int, workers: int | None) -> dict:
    """Simulate the default cohort into `out`; CPU and wall seconds, per-stage CPU per subject."""
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    own0, kids0 = _cpu()
    start = time.perf_counter()
    simulate_dti_cohort(out, subjects, seed=0, workers=workers, phantom={"anatomy": "mni_aparc"})
    wall = time.perf_counter() - start
    own1, kids1 = _cpu()
    stages: dict[str, list[float]] = {}
    for record in sorted(out.glob("sub-*/simulation.json")):
        for stage, sec in json.loads(record.read_text()).get("cpu_seconds", {}).items():
            stages.setdefault(stage, []).append(sec)
    return {"wall": wall, "own": own1 - own0, "workers": kids1 - kids0, "stages": stages}


def train_once(root: Path) -> tuple[float, float | None]:
    """Wall seconds of `python -m mrinet.train experiment=dti_mlp` from an empty data dir, and
    its test macro Dice."""
    cmd = [sys.executable, "-m", "mrinet.train", "experiment=dti_mlp", f"paths.root_dir={root}"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    wall = time.perf_counter() - start
    dice = None
    for path in root.rglob("metrics.json"):
        record = json.loads(path.read_text())
        flat = record.get("test", record) if isinstance(record, dict) else {}
        for key in ("test/dice_macro", "dice_macro"):
            if key in flat:
                dice = float(flat[key])
    return wall, dice


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="default: cohort_workers")
    parser.add_argument("--train", action="store_true", help="also time make train end to end")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate(Path(tmp) / "cohort", args.subjects, args.workers)
        if args.train:
            wall, dice = train_once(Path(tmp) / "train")
    n = args.subjects
    print(f"{n} subjects, 2 mm, anatomical phantom; CPU seconds per subject (median, max):")
    for stage, secs in sorted(sim["stages"].items(), key=lambda kv: -sum(kv[1])):
        print(f"  {stage:28s} {statistics.median(secs):6.3f} {max(secs):6.3f}")
    if sim["stages"] and all(len(v) == n for v in sim["stages"].values()):
        sums = [sum(v[i] for v in sim["stages"].values()) for i in range(n)]
        print(f"  {'sum of stages':28s} {statistics.median(sums):6.3f} {max(sums):6.3f}")
    total = sim["own"] + sim["workers"]
    print(
        f"simulation: wall {sim['wall']:.1f} s; CPU {total:.1f} s (this process {sim['own']:.1f}, "
        f"workers {sim['workers']:.1f}: their start-up and atlas included)"
    )
    if args.train:
        shown = "n/a" if dice is None else f"{dice:.3f}"
        print(f"make train from an empty data dir: wall {wall:.1f} s, test macro Dice {shown}")
    print(f"simulation CPU seconds per subject, all processes: {total / n:.2f}")
    return total / n


if __name__ == "__main__":
    main()
