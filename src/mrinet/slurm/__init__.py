"""SLURM: what the cluster can give (sinfo), jobs watched to their real end, preemption.

Light imports only: the Hydra launcher plugin (src/hydra_plugins/mrinet_slurm) imports this on
the login node, where torch and Lightning need not be loaded.
"""
