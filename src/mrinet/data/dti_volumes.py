"""`mrinet.data.dti_volumes.DTIVolumeDataModule`, the data `_target_` of volume checkpoints
written before the data/ task packages: an alias of
mrinet.data.tissue.volume_module.DTIVolumeDataModule (tests/fixtures/main_checkpoints)."""

from mrinet.data.tissue.volume_module import DTIVolumeDataModule

__all__ = ["DTIVolumeDataModule"]
