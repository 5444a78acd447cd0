"""LightningDataModules: file/simulator data -> batches. No model logic here."""
