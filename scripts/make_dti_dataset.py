"""Simulate a DTI cohort in HCP layout: python scripts/make_dti_dataset.py --out DIR --subjects 8."""

from mrinet.sim.dti_dataset import main

if __name__ == "__main__":
    main()
