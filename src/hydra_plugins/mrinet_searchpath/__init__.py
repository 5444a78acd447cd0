"""mrinet's Hydra search-path plugin: MRINET_CONFIG_PATH folders and extension packages."""
