"""`corea-jax demo`: not built yet (issue #9)."""

from corea_jax.commands import not_built

TAKES_CONFIG = True


def add_arguments(parser):
    del parser


def run(args):
    del args
    return not_built("demo", 9)
