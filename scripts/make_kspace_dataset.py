"""Simulate fastMRI-style multi-coil k-space volumes (thin wrapper of mrinet.sim.kspace_dataset)."""

from mrinet.sim.kspace_dataset import main

if __name__ == "__main__":
    main()
