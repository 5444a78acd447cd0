"""`python -m mrinet.reconstruct`: the command lives in mrinet.cli.reconstruct, the pipeline in
mrinet.recon (protocol record, `reconstruct(kspace, protocol)`, file driver); kept importable
under this name for scripts and notebooks written against it."""

from mrinet.cli.reconstruct import main, run
from mrinet.recon.driver import reconstruct_dataset, reconstruct_volume
from mrinet.recon.problem import remove_readout_oversampling
from mrinet.recon.protocol import (
    DEFAULT_ITERATIONS,
    MASKS,
    METHODS,
    REFERENCE_NOISE,
    method_tag,
    reference_tag,
)

__all__ = [
    "DEFAULT_ITERATIONS",
    "MASKS",
    "METHODS",
    "REFERENCE_NOISE",
    "main",
    "method_tag",
    "reconstruct_dataset",
    "reconstruct_volume",
    "reference_tag",
    "remove_readout_oversampling",
]

if __name__ == "__main__":
    run()
