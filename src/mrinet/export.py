"""`python -m mrinet.export`: the command lives in mrinet.cli.export, the graph and its writer in
mrinet.run.export_graph and mrinet.run.exporter; kept importable under this name for
scripts written against it."""

from mrinet.cli.export import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
