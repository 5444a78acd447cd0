"""`python -m mrinet.eval`: the command lives in mrinet.cli.eval; kept under this name for
scripts and notebooks written against it."""

from mrinet.cli.eval import (
    check_data_overrides,
    chosen_data_group,
    command_line_overrides,
    evaluate,
    main,
)

__all__ = [
    "check_data_overrides",
    "chosen_data_group",
    "command_line_overrides",
    "evaluate",
    "main",
]

if __name__ == "__main__":
    main()
