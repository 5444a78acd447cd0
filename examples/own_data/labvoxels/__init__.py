"""A user's own data for mrinet (examples/own_data; docs/extending.md)."""

from labvoxels.datamodule import LabVoxelDataModule

__all__ = ["LabVoxelDataModule"]
