"""`mrinet.data.dti.DTIDataModule`: the data `_target_` that configs/data/dti.yaml names and that
every DTI voxel checkpoint records (those written before the data/ task packages too). The class
lives in mrinet.data.tissue.voxel_module; this path keeps resolving, through the allowlist, for
every checkpoint (tests/fixtures/main_checkpoints) and for the error messages that name it."""

from mrinet.data.tissue.voxel_module import DTIDataModule

__all__ = ["DTIDataModule"]
