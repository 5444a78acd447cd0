"""Analyses of the data sets themselves (e.g. can trivial image statistics solve a task?)."""
