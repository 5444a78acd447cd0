"""MLflow as a logger, end to end: a real `mlflow server` (SQLite store, scripts/mlflow_local.sh)
on 127.0.0.1, tiny training runs, and the runs read back with MlflowClient next to TensorBoard."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, SRC, TINY_CNN, train_run, write_ghosted_reconstructions

pytest.importorskip("mlflow", reason="pip install 'mrinet[mlflow]'")

TINY_MLP = [
    "experiment=dti_mlp",
    "data_size=tiny",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=5",
    "extras.print_config=false",
    "extras.num_threads=1",
    "callbacks.progress_bar.kind=none",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(uri: str) -> bool:
    try:
        with urllib.request.urlopen(uri + "/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """scripts/mlflow_local.sh on a free port; stopped (its whole process group) afterwards."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "mlflow_local.sh"), str(port), str(folder / "store")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: uvicorn's workers stop with it
        env={**os.environ, "PYTHON": sys.executable},
    )
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core VM takes ~90 s to start it
        while not answers(uri):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n" + (folder / "server.log").read_text())
            time.sleep(1)
        yield {"uri": uri, "store": folder / "store"}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def server_run(tmp_path_factory, data_dir, cli, mlflow_server):
    """A tiny DTI MLP with logger=many (TensorBoard + CSV + MLflow) logging to the server."""
    from mlflow.tracking import MlflowClient

    work = tmp_path_factory.mktemp("mlflow-many")
    run_dir = work / "run"
    train_run(
        cli,
        *TINY_MLP,
        "logger=many",
        f"logger.mlflow.tracking_uri={mlflow_server['uri']}",
        run_dir=run_dir,
        data_dir=data_dir,
        cwd=work,
    )
    client = MlflowClient(mlflow_server["uri"])
    return {"dir": run_dir, "client": client, "run": find_run(client, run_dir)}


def find_run(client, run_dir: Path):
    """The MLflow run mrinet tagged with this run folder (exactly one)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, filter_string=f"tags.`mrinet.run_dir` = '{run_dir.resolve()}'"
    )
    assert len(runs) == 1, runs
    return runs[0]


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in run_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars


def artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for entry in client.list_artifacts(run_id, path):
        found += artifacts(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return found


@pytest.mark.e2e
def test_mlflow_holds_every_tensorboard_scalar(server_run):
    client, run = server_run["client"], server_run["run"]
    run_id = run.info.run_id
    tensorboard = tensorboard_scalars(server_run["dir"])
    assert {"train/loss", "val/dice_macro", "test/acc", "val/wm_called_thalamus"} <= set(
        tensorboard
    )
    assert any(t.startswith("grad_norm/") for t in tensorboard)
    assert set(run.data.metrics) == set(tensorboard)  # same tags
    for tag, points in tensorboard.items():
        # train.py writes the test metrics once more at step 0 for TensorBoard's HPARAMS view
        copies = tag.startswith("test/") and len({s for s, _ in points}) > 1
        expected = sorted({(s, v) for s, v in points if not (copies and s == 0)})
        history = sorted({(m.step, m.value) for m in client.get_metric_history(run_id, tag)})
        assert [s for s, _ in history] == [s for s, _ in expected], tag
        # TensorBoard stores float32: compare MLflow's float64 at that precision
        values = [v for _, v in history]
        assert values == pytest.approx([v for _, v in expected], rel=1e-6, abs=1e-7), tag


@pytest.mark.e2e
def test_mlflow_holds_hparams_and_figures(server_run):
    client, run = server_run["client"], server_run["run"]
    params = run.data.params
    assert float(params["model/optimizer/lr"]) == pytest.approx(0.003)
    assert params["model/net/in_features"] == "5" and "${" not in "".join(params.values())
    assert run.data.tags["mlflow.runName"] == "run" and run.info.status == "FINISHED"
    names = artifacts(client, run.info.run_id)
    for tag in ("val/confusion_matrix", "val/tissue_maps", "test/confusion_matrix"):
        assert any(n.startswith(f"figures/{tag}/step_") and n.endswith(".png") for n in names), (
            names
        )
    local = client.download_artifacts(run.info.run_id, names[0], str(server_run["dir"] / "dl"))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # served by the server: stored in its artifact folder, not in the run folder
    assert not (server_run["dir"] / "mlflow").exists()


@pytest.mark.e2e
def test_default_store_is_in_the_run_folder_without_tensorboard(tmp_path, data_dir, cli):
    """logger=mlflow alone on the CNN: image figures, texts and direct scalars reach MLflow."""
    from mlflow.tracking import MlflowClient

    recon_dir = write_ghosted_reconstructions(tmp_path / "recon")
    run_dir = tmp_path / "run"
    overrides = [*TINY_CNN, "trainer.max_epochs=2", f"data.recon_dir={recon_dir}", "logger=mlflow"]
    train_run(cli, *overrides, run_dir=run_dir, data_dir=data_dir, cwd=tmp_path)
    assert (run_dir / "mlflow" / "mlflow.db").is_file() and not (run_dir / "tensorboard").exists()
    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow' / 'mlflow.db'}")
    run = find_run(client, run_dir)
    assert (
        run.info.experiment_id == client.get_experiment_by_name("recon_quality_cnn").experiment_id
    )
    for key in ("val/auroc", "test/acc", "parameters/net_total", "parameters/conv3x3_1_to_1"):
        assert key in run.data.metrics, sorted(run.data.metrics)
    names = artifacts(client, run.info.run_id)
    for prefix in ("figures/val/examples/", "figures/val/roc/", "figures/test/confusion_matrix/"):
        assert any(n.startswith(prefix) for n in names), names
    assert "text/parameters/step_00000000.md" in names
    assert list((run_dir / "mlflow" / "artifacts").rglob("*.png"))


SHADOW = "raise ImportError('No module named mlflow (shadowed by the test)')\n"


def test_many_without_mlflow_logs_to_tensorboard_and_csv(tmp_path):
    """mlflow not importable (a shadowing package first on the path): logger=many goes on
    with TensorBoard and CSV and says so; logger=mlflow is a clear error."""
    shadow = tmp_path / "shadow" / "mlflow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(SHADOW)
    script = f"""
import logging, sys
logging.basicConfig()
from hydra import compose, initialize_config_dir
from mrinet.run.config_dir import config_dir
from mrinet.run.entry import instantiate_list, register_resolvers
register_resolvers()
with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
    many = compose("train", ["logger=many", "paths.output_dir={tmp_path / "out"}"])
    alone = compose("train", ["logger=mlflow", "paths.output_dir={tmp_path / "out"}"])
print(sorted(type(x).__name__ for x in instantiate_list(many.logger)))
try:
    instantiate_list(alone.logger)
except Exception as err:
    print("ERROR", err.__cause__ or err)
"""
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'shadow'}{os.pathsep}{SRC}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "['CSVLogger', 'TensorBoardLogger']" in proc.stdout
    assert "mlflow is not installed" in proc.stderr
    assert "logger=mlflow needs the mlflow package" in proc.stdout
    assert "pip install 'mrinet[mlflow]'" in proc.stdout


def test_unreachable_tracking_server_is_a_clear_error(tmp_path):
    from mrinet.errors import ConfigError
    from mrinet.run.trackers import mlflow_logger

    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        mlflow_logger(str(tmp_path), tracking_uri=uri)
    assert time.monotonic() - started < 30
    assert f"no MLflow tracking server answers at {uri}" in str(caught.value)
    assert "logger.mlflow.tracking_uri" in str(caught.value)
