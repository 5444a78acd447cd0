"""Reconstruction as a pipeline: a protocol record, `reconstruct(kspace, protocol)`, a file driver.

    protocol = ReconProtocol(acceleration=4, center_fraction=0.08, method="pics", lam="auto")
    image, reference, attrs = reconstruct(kspace, protocol)      # tensors in, tensors out
    reconstruct_dataset("kspace/", "recon/", workers=4, **settings)  # files, pool, shards

`protocol` (the record and its folder tags), `problem` (one volume as a problem object, sigpy
App style), `driver` (files, process pool, shards), `shards` (i/n splits of a file list).
"""

from mrinet.recon.driver import reconstruct_dataset, reconstruct_file, reconstruct_volume
from mrinet.recon.problem import VolumeRecon, reconstruct, remove_readout_oversampling
from mrinet.recon.protocol import ReconProtocol, method_tag, reference_tag

__all__ = [
    "ReconProtocol",
    "VolumeRecon",
    "method_tag",
    "reconstruct",
    "reconstruct_dataset",
    "reconstruct_file",
    "reconstruct_volume",
    "reference_tag",
    "remove_readout_oversampling",
]
