"""Experiment trackers beside TensorBoard: MLflow as a Lightning logger, stored in the run dir or
on a tracking server (docs/mlflow.md); figures reach it through mrinet.models.run_writer."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path

from mrinet.errors import ConfigError

log = logging.getLogger(__name__)
INSTALL = "pip install 'mrinet[mlflow]'"


def local_store(run_dir: str | Path) -> tuple[str, str]:
    """The default MLflow store of a run: a SQLite database and an artifact folder in the run's
    own folder (MLflow 3 keeps the ./mlruns file store in maintenance mode only)."""
    folder = Path(run_dir).resolve() / "mlflow"
    return f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts")


def check_server(uri: str, timeout: float = 10.0) -> None:
    """A tracking server that does not answer is a clear error now, not minutes of retries later."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answers (a proxy or an authenticating server may refuse /health itself)
    except (urllib.error.URLError, OSError, ValueError) as err:
        problem = str(getattr(err, "reason", err))
    raise ConfigError(
        f"no MLflow tracking server answers at {uri} ({problem})",
        "logger.mlflow.tracking_uri",
        "start one (scripts/mlflow_local.sh, or `mlflow server`), fix the address, or drop "
        "logger.mlflow.tracking_uri to log into the run's folder",
    )


def mlflow_logger(
    run_dir: str,
    experiment_name: str = "mrinet",
    run_name: str | None = None,
    tracking_uri: str | None = None,
    artifact_location: str | None = None,
    tags: dict | None = None,
    required: bool = True,
):
    """A Lightning MLFlowLogger; without `tracking_uri`, a SQLite store in `<run_dir>/mlflow`.

    `required=False` (logger=many): None, with one warning, when mlflow is not installed, so the
    run goes on with its other loggers; `required=True` (logger=mlflow): a ConfigError."""
    try:
        import mlflow  # noqa: F401
    except ImportError as err:
        if required:
            raise ConfigError(
                f"logger=mlflow needs the mlflow package ({err})",
                "logger",
                f"{INSTALL}, or choose logger=tensorboard|csv|many",
            ) from err
        log.warning("mlflow is not installed: this run logs without it (%s to add it)", INSTALL)
        return None
    from pytorch_lightning.loggers import MLFlowLogger

    if not tracking_uri:
        tracking_uri, default_artifacts = local_store(run_dir)
        artifact_location = artifact_location or default_artifacts
        Path(artifact_location).mkdir(parents=True, exist_ok=True)
    elif tracking_uri.startswith(("http://", "https://")):
        check_server(tracking_uri)
    elif tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    run_tags = {"mrinet.run_dir": str(Path(run_dir).resolve()), **(tags or {})}
    return MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name or Path(run_dir).name,
        tracking_uri=tracking_uri,
        artifact_location=artifact_location,
        tags=run_tags,
    )
