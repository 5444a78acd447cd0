"""A user's own nets for mrinet (examples/own_net; docs/extending.md)."""

from mynets.resmlp import ResMLP

__all__ = ["ResMLP"]
