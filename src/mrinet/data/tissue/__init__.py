"""Tissue classification from DTI: subjects read once (reader, subjects, tables), spatial context
as plain records (context, columns, geometry), the auto-context first stage, the voxel cache,
and two sibling DataModules: voxels (voxel_module) and whole volumes (volume_module)."""
