"""Small helpers used by several layers (progress of long batch jobs)."""
