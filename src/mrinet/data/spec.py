"""The model/data contract under its name before the data/ task packages (now
mrinet.data.contract): kept so user code and anything recorded by that path still resolve."""

from mrinet.data.contract import BatchGroup, DataSpec, class_counts, require_splits

__all__ = ["BatchGroup", "DataSpec", "class_counts", "require_splits"]
