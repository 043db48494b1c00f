"""`corea-jax generate`: not built yet (issue #3)."""

from corea_jax.commands import not_built

TAKES_CONFIG = True


def add_arguments(parser):
    del parser


def run(args):
    del args
    return not_built("generate", 3)
