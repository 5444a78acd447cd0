"""Simulate a DTI cohort in HCP layout: python scripts/make_dti_dataset.py --out DIR --subjects 8."""

from mrinet.cli.simulate_dti import run

if __name__ == "__main__":
    run()
