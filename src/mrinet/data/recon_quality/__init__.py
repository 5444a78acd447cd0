"""Reconstruction-quality images: which images a split holds (index), per-image scaling and
flips (transforms), batch servers (batches, shared_batches) and the DataModule (module).

`ReconQualityDataModule` is re-exported here: checkpoints written before the data/ task
packages record `mrinet.data.recon_quality.ReconQualityDataModule` as their data `_target_`."""

from mrinet.data.recon_quality.module import ReconQualityDataModule

__all__ = ["ReconQualityDataModule"]
