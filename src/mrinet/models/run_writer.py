"""One writer for a run's figures and texts: TensorBoard's add_scalar/add_figure/add_text, also
sent to every MLflow logger of the run (figures and texts as artifacts)."""

from __future__ import annotations


def _step_name(step: int) -> str:
    return f"step_{int(step):08d}"


class RunWriter:
    """TensorBoard's add_scalar/add_figure/add_text, written to TensorBoard and to every MLflow
    logger of the run (figures and texts as artifacts under figures/<tag>/, text/<tag>/)."""

    def __init__(self, tensorboard=None, mlflow_loggers=()) -> None:
        self.tensorboard, self.mlflow = tensorboard, list(mlflow_loggers)

    def add_scalar(self, tag: str, value, global_step: int) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_scalar(tag, value, global_step)
        for logger in self.mlflow:
            logger.log_metrics({tag: float(value)}, step=int(global_step))

    def add_figure(self, tag: str, figure, global_step: int, close: bool = True) -> None:
        for logger in self.mlflow:  # before TensorBoard closes the figure
            name = f"figures/{tag}/{_step_name(global_step)}.png"
            logger.experiment.log_figure(logger.run_id, figure, name)
        if self.tensorboard is not None:
            self.tensorboard.add_figure(tag, figure, global_step=global_step, close=close)
        elif close:
            import matplotlib.pyplot as plt

            plt.close(figure)

    def add_text(self, tag: str, text: str, global_step: int) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_text(tag, text, global_step=global_step)
        for logger in self.mlflow:
            name = f"text/{tag}/{_step_name(global_step)}.md"
            logger.experiment.log_text(logger.run_id, text, name)


def run_writer(loggers) -> RunWriter | None:
    """The RunWriter over a run's loggers (first TensorBoard, every MLflow); None if neither."""
    from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger

    tensorboard = next((lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)), None)
    mlflow_loggers = [lg for lg in loggers if isinstance(lg, MLFlowLogger)]
    if tensorboard is None and not mlflow_loggers:
        return None
    return RunWriter(tensorboard, mlflow_loggers)
