"""The one exception type the command line reports as a single line.

Library code raises a subclass of `CoreaError` (or `CoreaError` itself) for anything a user can
fix: a bad file, row, field or flag. The message must name the file, row or field. The CLI prints
it as `corea-jax: error: MESSAGE` and exits with status 2; anything else is a bug and keeps its
traceback.
"""


class CoreaError(ValueError):
    """A user-fixable error; the message names the file, row, key or field at fault."""
