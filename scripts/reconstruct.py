"""Undersample and reconstruct fastMRI-style k-space (thin wrapper of mrinet-reconstruct)."""

from mrinet.cli.reconstruct import run

if __name__ == "__main__":
    run()
