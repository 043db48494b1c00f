"""Config sections -> settings dataclasses: `build_section`, the one `Cls(**section)`.

Every command reads its ConfigDict once, at the entry point, into frozen dataclasses whose
fields are the section's keys and hold the defaults (corea_jax/rl/config.py,
corea_jax/cascade/settings.py, corea_jax/serving/settings.py). A misspelt key is a one-line
error naming `section.key` and the keys that exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from corea_jax.errors import CoreaError


def build_section(cls, section: Mapping, where: str, hidden: frozenset = frozenset()):
    """`cls(**section)` with lists made tuples (the dataclasses are frozen and hashable);
    an unknown key raises naming `where.KEY`. `hidden` fields are not listed as known ones
    (set by the caller, e.g. a dataset's `name`, which is its section's key)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - fields)
    if unknown:
        keys = ", ".join(f"{where}.{k}" for k in unknown)
        raise CoreaError(f"unknown config key {keys} (known: {sorted(fields - hidden)})")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
