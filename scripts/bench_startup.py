"""Start-up cost: `python -m mrinet.train` up to its first training step vs a bare
`import torch, pytorch_lightning, hydra` + one Hydra compose, each in a fresh process.

The mrinet command trains exactly one step on the cached default DTI data (generated first,
outside the timing) with validation, testing and checkpointing switched off, so what is timed
is imports, config composition, data loading and Trainer set-up. The two commands alternate;
each run's wall time and CPU time (user + system of the child process, which holds better on a
loaded machine) are recorded. Prints medians and, last, the ratio of wall-time medians (goal
<= 1.10x, issue 26; the CPU-time ratio on the line before).

    python scripts/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time

BARE = (
    "import torch, pytorch_lightning, hydra\n"
    "from hydra import compose, initialize_config_dir\n"
    "from mrinet.run.config_dir import config_dir\n"
    "from mrinet.run.entry import register_resolvers\n"
    "register_resolvers()\n"
    "with initialize_config_dir(config_dir=config_dir(), version_base='1.3'):\n"
    "    compose(config_name='train', overrides=['experiment=dti_mlp'])\n"
)
ONE_STEP = [
    "experiment=dti_mlp",
    "trainer.max_steps=1",
    "+trainer.limit_val_batches=0",
    "test=false",
    "optimized_metric=train/loss",
    "callbacks.model_checkpoint=null",
    "callbacks.early_stopping=null",
    "callbacks.progress_bar.kind=none",
]


def seconds(cmd: list[str], cwd: str) -> tuple[float, float]:
    """Wall and CPU seconds (the child's user + system) of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mrinet = [sys.executable, "-m", "mrinet.train", *ONE_STEP, f"paths.root_dir={tmp}"]
        seconds(mrinet, tmp)  # generate and cache the synthetic cohort outside the timing
        bare_s, ours_s = [], []
        for _ in range(args.repeats):
            bare_s.append(seconds([sys.executable, "-c", BARE], tmp))
            ours_s.append(seconds(mrinet, tmp))
    bare, ours = (statistics.median(w for w, _ in s) for s in (bare_s, ours_s))
    bare_cpu, ours_cpu = (statistics.median(c for _, c in s) for s in (bare_s, ours_s))
    n = args.repeats
    print(
        f"bare import torch+lightning+hydra + compose: median {bare:.2f} s wall, "
        f"{bare_cpu:.2f} s CPU over {n}"
    )
    print(
        f"mrinet.train to its first training step:      median {ours:.2f} s wall, "
        f"{ours_cpu:.2f} s CPU over {n}"
    )
    print(f"CPU-time ratio mrinet/bare: {ours_cpu / bare_cpu:.2f}x")
    print(f"ratio mrinet/bare: {ours / bare:.2f}x")


if __name__ == "__main__":
    main()
