"""Lightning callbacks mrinet adds to runs; each lives in its own module, re-exported here."""

from mrinet.callbacks.confusion_figure import ConfusionMatrixFigure
from mrinet.callbacks.grad_norms import GradNormLogger
from mrinet.callbacks.precise_batch_norm import PreciseBatchNorm
from mrinet.callbacks.progress_bar import LineProgress, progress_bar
from mrinet.callbacks.requeue import RequeueAtSafePoint, RevalidateAfterRestart
from mrinet.callbacks.run_info import RunInfoInCheckpoint
from mrinet.callbacks.saturation import SaturationMonitor
from mrinet.callbacks.tissue_maps import TissueMapLogger

__all__ = [
    "ConfusionMatrixFigure",
    "GradNormLogger",
    "LineProgress",
    "PreciseBatchNorm",
    "RequeueAtSafePoint",
    "RevalidateAfterRestart",
    "RunInfoInCheckpoint",
    "SaturationMonitor",
    "TissueMapLogger",
    "progress_bar",
]
