"""`mrinet.data.dti_volumes.DTIVolumeDataModule`: the data `_target_` that
configs/data/dti_volumes.yaml names and every volume checkpoint records (those written before
the data/ task packages too; eval compares a `data=` choice with the recorded target). The class
lives in mrinet.data.tissue.volume_module (tests/fixtures/main_checkpoints)."""

from mrinet.data.tissue.volume_module import DTIVolumeDataModule

__all__ = ["DTIVolumeDataModule"]
