"""Which classes a config read from a file may name: the allowlist lives in mrinet.io.trust
(a checkpoint is a file, and the first stage a DataModule reads is one too); here the part
that reads a composed Hydra config: `configure_from`."""

from __future__ import annotations

from mrinet.io.trust import (  # noqa: F401  (the names entry points and tests use)
    BUILTIN,
    ENV,
    UntrustedTargetError,
    check_config,
    check_target,
    configure,
    targets_in,
    trusted_modules,
)


def configure_from(cfg) -> None:
    """`configure` from a composed entry-point config: its `trusted_modules` and the targets
    of its own model and data groups (the user's choices, trusted in a resumed checkpoint)."""
    from omegaconf import OmegaConf

    own = []
    for group in ("model", "data"):
        node = cfg.get(group) if hasattr(cfg, "get") else None
        if node is not None:
            own.extend(targets_in(OmegaConf.to_container(node, resolve=False)))
    trusted = cfg.get("trusted_modules") if hasattr(cfg, "get") else None
    if isinstance(trusted, str):
        trusted = trusted.replace(",", " ").split()
    configure(list(trusted or ()), own)
