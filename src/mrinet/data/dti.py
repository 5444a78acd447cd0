"""`mrinet.data.dti.DTIDataModule`, the data `_target_` every checkpoint written before the
data/ task packages records: an alias of mrinet.data.tissue.voxel_module.DTIDataModule, so
those checkpoints still pass the allowlist and instantiate (tests/fixtures/main_checkpoints)."""

from mrinet.data.tissue.voxel_module import DTIDataModule

__all__ = ["DTIDataModule"]
