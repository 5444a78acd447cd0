"""Simulators that write datasets in exactly the layout real data has (through mrinet.io)."""
