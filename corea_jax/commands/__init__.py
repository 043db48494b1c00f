"""One module per `corea-jax` subcommand: `add_arguments(parser)` and `run(args) -> int`."""

import sys


def not_built(name: str, issue: int) -> int:
    """The answer of a subcommand whose implementation has not landed yet."""
    print(f"corea-jax {name}: not implemented yet (tracked in issue #{issue})", file=sys.stderr)
    return 2
