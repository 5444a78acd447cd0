#!/usr/bin/env bash
# A local MLflow tracking server with a SQLite store, for trying logger.mlflow.tracking_uri and
# for the MLflow tests (tests/e2e/test_mlflow.py starts it on a free port and stops it).
#
#   scripts/mlflow_local.sh [PORT] [DIR]
#
# Runs in the foreground until Ctrl-C / SIGTERM, listening on 127.0.0.1 only. DIR (default
# $MRINET_MLFLOW_DIR, else ./logs/mlflow) holds mlflow.db (runs, metrics, params) and artifacts/
# (figures), served through the server (--serve-artifacts), so clients need no shared disk.
# Then: mrinet-train ... logger=many logger.mlflow.tracking_uri=http://127.0.0.1:PORT
# Needs the full mlflow package (pip install 'mrinet[mlflow]'; mlflow-skinny has no server).
set -euo pipefail

PORT=${1:-${MRINET_MLFLOW_PORT:-5000}}
DIR=${2:-${MRINET_MLFLOW_DIR:-logs/mlflow}}
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c "import mlflow.server" 2>/dev/null; then
    echo "mlflow_local: error: $PYTHON has no MLflow server: pip install 'mrinet[mlflow]'" >&2
    exit 1
fi
# the server's job runner (GenAI scorers: eight worker processes, ~1 GB) is not needed to track runs
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
mkdir -p "$DIR/artifacts"
DIR=$(cd "$DIR" && pwd)
echo "mlflow_local: http://127.0.0.1:$PORT (store sqlite:///$DIR/mlflow.db, artifacts $DIR/artifacts)"
exec "$PYTHON" -m mlflow server \
    --backend-store-uri "sqlite:///$DIR/mlflow.db" \
    --artifacts-destination "$DIR/artifacts" \
    --serve-artifacts \
    --host 127.0.0.1 --port "$PORT" --workers 1
