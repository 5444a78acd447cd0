"""Benchmark mrinet's Optuna sweeper (issue 22): what pruning saves, what async trials save.

    python scripts/bench_sweep.py pruning [--trials 24] [--pruner hyperband] [--data-size full]
        [--pruner-option reduction_factor=4] [--unpruned-journal PATH]
    python scripts/bench_sweep.py async [--app train|toy] [--epochs 5 20] [--order N ...]
    python scripts/bench_sweep.py plot PRUNED_JOURNAL [--out-dir docs/img]

pruning: the same search (`experiment=dti_mlp hparams_search=dti_mlp_optuna`, the default
cohort, the same sampler seed) twice, without and with a pruner, each in its own journal study,
trials one after the other in the sweeper's process, one simulated cohort for every trial
(simulated before either search, or --data-dir), no test-set evaluation (the objective is
val/dice_macro). Prints the trial-epochs each ran (the sum over trials of the validation epochs
reported to the study; early stopping included) and their ratio (target <= 0.5), and the best
val/dice_macro of each (target: within 0.01). Counts do not depend on the machine's load;
`--concurrent` runs both searches at once (same counts, wall times under each other's load).

async: the same 8 real trials (tiny DTI cohort, training only trainer.max_epochs differing, up
to 4x) enqueued into each study in one stated order (default: lengths 20 5 20 5 15 10 15 10,
long and short alternating, so each batch of 2 pairs a long trial with a short one; --order
gives another), run on `n_jobs` slots of the local launcher batch by batch
(`async_trials=false`) and asynchronously; prints the order, both wall times, the epoch-unit
bound of that order (start-ups left out), each trial's slot time, how far apart the lengths
really were in time, and the ratio last (target <= 0.75). Every trial also pays a fixed
start-up (process, imports, data, test; ~11 s quiet, against ~0.08 s a tiny epoch), so lengths
that differ 4x in time need epochs that differ more: `--order 512 25 512 25 350 188 350 188`
gives trials of ~52, 13, 39 and 26 s on a quiet machine (the script prints the measured spread). Wall times depend on the load: measure on a quiet machine. `--app toy` runs the tests' toy objective
(tests/sweep/toy_app.py: each epoch a sleep) in the same order, which shows the scheduling
with next to no CPU.

plot: optuna-dashboard's intermediate values and optimization history of a study (e.g. the
pruned search's journal) as PNGs, through Optuna's matplotlib plots of the same storage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple:
    """Start `cmd` (its output to a log file beside it); what `finish` waits for."""
    full = {**os.environ, **(env or {})}
    if env and "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):  # keep the caller's too
        full["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.environ["PYTHONPATH"]
    log = tempfile.NamedTemporaryFile("w+", dir=cwd, prefix="run_", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=cwd, env=full, stdout=log, stderr=subprocess.STDOUT)
    return cmd, proc, log, time.perf_counter()


def finish(started: tuple) -> float:
    """Wait for a `start`ed command; its wall time in seconds (exits on failure, with its
    output's tail)."""
    cmd, proc, log, t0 = started
    code = proc.wait()
    took = getattr(proc, "ended", time.perf_counter()) - t0
    if code != 0:
        log.seek(0)
        print(log.read()[-4000:], file=sys.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)} (log: {log.name})")
    return took


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    """Run `cmd`; its wall time in seconds (exits on failure with its output's tail)."""
    return finish(start(cmd, cwd, env))


def journal_study(path: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


def trial_epochs(study) -> int:
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


def pruning(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    common = [
        sys.executable,
        "-m",
        "mrinet.train",
        "-m",
        "experiment=dti_mlp",
        "hparams_search=dti_mlp_optuna",
        f"data_size={args.data_size}",
        f"hydra.sweeper.n_trials={args.trials}",
        "hydra.sweeper.n_jobs=1",  # trials in this process, one after the other: same order
        "extras.print_config=false",
        "callbacks.progress_bar.kind=none",
        "trainer.enable_model_summary=false",
        # the objective is val/dice_macro: the test set's evaluation after each trial would
        # cost time and change nothing the search sees
        "test=false",
        f"extras.num_threads={args.threads}",
        f"paths.log_dir={work / 'logs'}",
        # one simulated cohort for every trial of both searches (simulated once, then cached)
        f"paths.data_dir={args.data_dir or work / 'data'}",
    ]
    env = {"PYTHONPATH": str(ROOT / "src")}
    if not args.data_dir:  # simulate the cohort before either search (not in a trial's time)
        warm = [*common[:3], "experiment=dti_mlp", f"data_size={args.data_size}", "test=false"]
        warm += [common[13], common[15], f"paths.log_dir={work / 'warm'}", "trainer.max_epochs=1"]
        run(warm, work, env)
    results, running = {}, {}
    for label, pruner in (("unpruned", "none"), ("pruned", args.pruner)):
        journal = work / f"{label}.journal"
        if label == "unpruned" and args.unpruned_journal:  # the same search, run before
            journal, took = Path(args.unpruned_journal), float("nan")
            study = journal_study(journal, "dti_mlp")
            results[label] = (trial_epochs(study), study.best_value, took, 0)
            print(
                f"unpruned  (from {journal}) trial-epochs {results[label][0]:4d}  best "
                f"val/dice_macro {study.best_value:.4f}"
            )
            continue
        extra = [f"hydra.sweeper.storage=journal:{journal}", f"hydra.sweeper.pruner={pruner}"]
        if pruner != "none":
            options = args.pruner_option or (
                ["reduction_factor=4"] if pruner == "hyperband" else []  # docs/benchmarks.md
            )
            extra += [f"hydra.sweeper.pruner_options.{kv}" for kv in options]
        running[label] = (pruner, journal, start([*common, *extra], work, env))
        if not args.concurrent:
            running[label] = (pruner, journal, finish(running[label][2]))
    procs = [started[1] for _, _, started in running.values() if not isinstance(started, float)]
    while any(p.poll() is None for p in procs):  # each one's own end time (--concurrent)
        time.sleep(1.0)
        for p in procs:
            if p.poll() is not None and not hasattr(p, "ended"):
                p.ended = time.perf_counter()
    for label, (pruner, journal, started) in running.items():
        took = started if isinstance(started, float) else finish(started)
        study = journal_study(journal, "dti_mlp")
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        results[label] = (trial_epochs(study), study.best_value, took, states.count("PRUNED"))
        print(
            f"{label:9s} pruner={pruner:10s} trial-epochs {results[label][0]:4d}  best "
            f"val/dice_macro {study.best_value:.4f}  pruned {states.count('PRUNED')}/"
            f"{len(states)}  wall {took:.0f} s (load-sensitive)"
        )
    (e0, b0, _, _), (e1, b1, _, _) = results["unpruned"], results["pruned"]
    print(
        f"trial-epochs ratio pruned/unpruned: {e1 / e0:.3f} (target <= 0.5)\n"
        f"best val/dice_macro: {b1:.4f} vs {b0:.4f}, difference {b1 - b0:+.4f} (target within 0.01)"
    )


def interleaved(short: int, long: int) -> list[int]:
    """4 lengths from `short` to `long`, each twice, long and short alternating: the order in
    which every batch of 2 pairs a long trial with a short one."""
    step = (long - short) / 3
    a, b, c, d = (round(short + i * step) for i in range(4))
    return [d, a, d, a, c, b, c, b]


def makespans(lengths: list[int], slots: int) -> tuple[int, int]:
    """(batch, async) wall time of `lengths` in epoch units on `slots` slots, start-ups left
    out: batches wait for their longest; async starts the next trial on the first free slot."""
    batch = sum(max(lengths[i : i + slots]) for i in range(0, len(lengths), slots))
    free = [0] * slots
    for length in lengths:
        free[free.index(min(free))] += length
    return batch, max(free)


def enqueue(journal: Path, name: str, trials: list[dict]) -> None:
    """The trials, in this order, into a new journal study: the sweeper asks them in order."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for params in trials:
        study.enqueue_trial(params)


def async_vs_batch(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    lengths = args.order or interleaved(*args.epochs)
    if len(lengths) != args.trials:
        raise SystemExit(f"--order: {args.trials} lengths, got {lengths}")
    key = "epochs" if args.app == "toy" else "trainer.max_epochs"
    data_dir = args.data_dir or work / "data"
    space = f"{key}=choice({','.join(str(n) for n in sorted(set(lengths)))})"
    if args.app == "toy":
        base = [
            sys.executable,
            str(ROOT / "tests" / "sweep" / "toy_app.py"),
            f"hydra.searchpath=[file://{ROOT / 'configs'}]",
            space,
            f"epoch_s={args.epoch_s}",
            "x=choice(0.5)",
        ]
        trials, study = [{key: n, "x": 0.5} for n in lengths], "toy"
        env = {"PYTHONPATH": str(ROOT / "src"), "TOY_SWEEP_DIR": str(work / "sweeps")}
    else:
        base = [
            sys.executable,
            "-m",
            "mrinet.train",
            "-m",
            "experiment=dti_mlp",
            "hparams_search=dti_mlp_optuna",
            "hydra.sweeper.params=null",  # the search's space: trainer.max_epochs alone
            "data_size=tiny",
            space,
            "callbacks.early_stopping.patience=1000",  # every trial runs all its epochs
            "model.optimizer.lr=3e-3",
            "model.optimizer.weight_decay=0",
            "model.net.hidden_dims=[64,64]",
            "model.net.dropout=0",
            "data.batch_size=512",
            "extras.print_config=false",
            "callbacks.progress_bar.kind=none",
            "trainer.enable_model_summary=false",
            "extras.num_threads=1",
            f"paths.log_dir={work / 'logs'}",
            f"paths.data_dir={data_dir}",
        ]
        trials, study = [{key: n} for n in lengths], "dti_mlp"
        env = {"PYTHONPATH": str(ROOT / "src")}
    base += [
        "hydra/launcher=local",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.n_jobs={args.slots}",
    ]
    if args.app == "train" and not args.data_dir:  # the tiny cohort simulated before timing
        warm = [sys.executable, "-m", "mrinet.train", "experiment=dti_mlp", "data_size=tiny"]
        warm += ["trainer.max_epochs=1", "test=false", "extras.print_config=false"]
        run([*warm, f"paths.log_dir={work / 'warm'}", f"paths.data_dir={data_dir}"], work, env)
    batch_units, async_units = makespans(lengths, args.slots)
    print(
        f"{args.trials} trials, lengths in the order asked (both modes): {lengths} epochs; "
        f"{args.slots} slots"
    )
    walls = {}
    for label, flag in (("batch", "false"), ("async", "true")):
        journal = work / f"{label}.journal"
        enqueue(journal, study, trials)
        walls[label] = run(
            [
                *base,
                f"hydra.sweeper.async_trials={flag}",
                f"hydra.sweeper.storage=journal:{journal}",
            ],
            cwd=work,
            env=env,
        )
        done = journal_study(journal, study).get_trials(deepcopy=False)
        ran = [t.params[key] for t in done]
        if ran != lengths:
            raise SystemExit(f"{label}: the study ran {ran}, not the enqueued {lengths}")
        # each trial's slot time: asked (its process spawned) to told (its result read)
        slot_s = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
        print(
            f"{label:5s}: wall {walls[label]:.1f} s; each trial's slot time (s): "
            f"{' '.join(f'{x:.0f}' for x in slot_s)}"
        )
        if label == "async":  # told the moment each ends (a batch's are told together)
            by_length = {n: [x for m, x in zip(lengths, slot_s) if m == n] for n in set(lengths)}
            mean = {n: sum(v) / len(v) for n, v in by_length.items()}
            spread = mean[max(lengths)] / mean[min(lengths)]
            measured = makespans([round(x) for x in slot_s], args.slots)
    print(
        f"epoch-unit bound (no start-ups): batch {batch_units}, async {async_units}, "
        f"{async_units / batch_units:.3f}"
    )
    print(
        f"measured trial lengths: longest/shortest {spread:.2f}x in time (epochs: "
        f"{max(lengths) / min(lengths):.1f}x; a trial's fixed start-up/test time narrows it); "
        f"bound for those lengths: {measured[1] / measured[0]:.3f}"
    )
    if spread > 4.0:  # the target is about trials whose lengths (in time) differ up to 4x
        print(f"the trials' lengths differ {spread:.2f}x in time, more than the target's 4x")
    print(
        f"async/batch wall time: {walls['async'] / walls['batch']:.3f} (target <= 0.75; "
        f"{'load-insensitive (sleeping toy trials)' if args.app == 'toy' else 'load-sensitive'})"
    )


def plot(args: argparse.Namespace) -> None:
    """What optuna-dashboard draws for a study, as PNGs (Optuna's matplotlib plots of the same
    storage): each trial's value per epoch (pruned trials end early) and the history."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as views

    study = journal_study(Path(args.journal), args.study)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, view in (
            ("intermediate", views.plot_intermediate_values),
            ("history", views.plot_optimization_history),
        ):
            ax = view(study)
            if name == "intermediate" and ax.get_legend() is not None:
                ax.get_legend().remove()  # one entry per trial: the lines say enough
            ax.set_ylabel(args.metric)
            ax.figure.set_size_inches(7, 4)
            ax.figure.tight_layout()
            path = out / f"{args.prefix}_{name}.png"
            ax.figure.savefig(path, dpi=90)
            print(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pruning")
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--pruner", default="hyperband")
    p.add_argument(
        "--pruner-option",
        action="append",
        default=[],
        help="KEY=VALUE for hydra.sweeper.pruner_options (repeatable; hyperband default: "
        "reduction_factor=4)",
    )
    p.add_argument("--data-size", default="full", help="full (the default cohort) or tiny")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--concurrent",
        action="store_true",
        help="run both searches at once (same counts and best values; the wall times then "
        "include each other's load)",
    )
    p.add_argument(
        "--unpruned-journal",
        default=None,
        help="reuse the unpruned study of an earlier run of the same search (a journal file)",
    )
    a = sub.add_parser("async")
    a.add_argument("--app", choices=("train", "toy"), default="train")
    a.add_argument("--trials", type=int, default=8)
    a.add_argument("--slots", type=int, default=2)
    a.add_argument("--epochs", type=int, nargs=2, default=(5, 20), help="shortest, longest")
    a.add_argument(
        "--order",
        type=int,
        nargs="+",
        default=None,
        help="the trials' lengths in epochs, in the order they are asked (default: 4 lengths "
        "from --epochs, each twice, long and short alternating)",
    )
    a.add_argument("--epoch-s", type=float, default=1.0, help="toy: seconds per epoch")
    a.add_argument("--data-dir", default=None)
    v = sub.add_parser("plot", help="optuna-dashboard's intermediate values and history as PNGs")
    v.add_argument("journal", help="a study's journal file (e.g. the pruned one of `pruning`)")
    v.add_argument("--study", default="dti_mlp")
    v.add_argument("--metric", default="val/dice_macro", help="the y axis' label")
    v.add_argument("--out-dir", default=str(ROOT / "docs" / "img"))
    v.add_argument("--prefix", default="sweep_pruned")
    args = parser.parse_args(argv)
    {"pruning": pruning, "async": async_vs_batch, "plot": plot}[args.what](args)


if __name__ == "__main__":
    main()
