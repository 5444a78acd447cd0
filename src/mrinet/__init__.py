"""mrinet: PyTorch Lightning + Hydra framework for neural networks on MRI data."""

__version__ = "0.1.0"
