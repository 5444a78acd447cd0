"""File formats: the only layer that opens files. Readers validate and raise mrinet.errors."""
