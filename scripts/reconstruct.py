"""Undersample and reconstruct fastMRI-style k-space (thin wrapper of mrinet.reconstruct)."""

import sys

from mrinet.errors import MrinetError
from mrinet.reconstruct import main

if __name__ == "__main__":
    try:
        main()
    except MrinetError as err:
        sys.exit(f"error: {err}")
