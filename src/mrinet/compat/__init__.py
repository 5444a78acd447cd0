"""Compatibility shims: the private APIs of third-party libraries mrinet relies on, one module
per library, each call tested against the installed version (tests/compat)."""
