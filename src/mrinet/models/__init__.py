"""LightningModules: losses, optimisation and metrics around the plain nets. No data logic here."""
