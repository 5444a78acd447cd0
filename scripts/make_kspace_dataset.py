"""Simulate fastMRI-style multi-coil k-space volumes (thin wrapper of mrinet-simulate-kspace)."""

from mrinet.cli.simulate_kspace import run

if __name__ == "__main__":
    run()
