"""`python -m corea_jax` is the `corea-jax` console script."""

from corea_jax.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
