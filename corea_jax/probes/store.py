"""A fitted probe saved next to the run, reused only for the model and settings it was fitted on.

File format: one JSON object (written atomically: `corea_jax.atomic_files.write_atomic`, so a
failed or interrupted save leaves the previous file as it was):

    format          1
    kind            "probe" (reads the SLM's completion) or "router" (reads the prompt only)
    model_identity  `model_identity(model_dir)` of the SLM whose hidden states were fitted
    settings        the caller's dict (layer, pooling, data split, ...), compared on load
    created         UTC time of the save (informational, never compared)
    c, cv_table, n_train, positive_rate, bias
    mean, scale, weight   [D] float64 lists (Python floats read back bit-exactly)

A probe is a function of one model's hidden states: loading it for another checkpoint, another
layer or pooling would silently return noise, so `load_probe` refuses with a one-line error
naming the file and what differs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from corea_jax.atomic_files import write_atomic
from corea_jax.errors import CoreaError
from corea_jax.probes.logistic import Probe

FORMAT = 1
KINDS = ("probe", "router")
_EDGE_BYTES = 1 << 20


def _edge_digest(path: Path) -> str:
    """sha256 of the file's size, its first and its last MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(_EDGE_BYTES))
        f.seek(max(0, size - _EDGE_BYTES))
        h.update(f.read(_EDGE_BYTES))
    return h.hexdigest()


def model_identity(model_dir: str | Path) -> str:
    """A stable digest (64 hex) of the checkpoint in `model_dir`, independent of its path and
    file times: sha256 over config.json's bytes and, per `*.safetensors` file sorted by name,
    its name, size and the sha256 of its first and last MiB.

    Cheap for a 15 GB checkpoint (4 MiB read per shard) and sensitive enough: the first MiB holds
    the safetensors header and the first tensors' bytes, the last MiB the last tensors', and two
    runs trained from the same start differ in every tensor.
    """
    model_dir = Path(model_dir)
    config = model_dir / "config.json"
    try:
        h = hashlib.sha256(config.read_bytes())
    except OSError as e:
        raise CoreaError(f"model identity: cannot read {config}: {e.strerror or e}") from None
    shards = sorted(model_dir.glob("*.safetensors"), key=lambda p: p.name)
    if not shards:
        raise CoreaError(f"model identity: no *.safetensors in {model_dir}")
    for shard in shards:
        h.update(f"\n{shard.name}\n".encode())
        h.update(_edge_digest(shard).encode())
    return h.hexdigest()


def _normalised(settings: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The settings as they read back from JSON (tuples -> lists, keys sorted)."""
    try:
        return json.loads(json.dumps(dict(settings), sort_keys=True))
    except (TypeError, ValueError) as e:
        raise CoreaError(f"{what}: settings are not JSON-serialisable: {e}") from None


def _check_kind(kind: str, what: str) -> None:
    if kind not in KINDS:
        raise CoreaError(f"{what}: kind={kind!r}, expected one of {', '.join(KINDS)}")


def save_probe(
    path: str | Path,
    probe: Probe,
    *,
    kind: str,
    model_identity: str,
    settings: Mapping[str, Any],
) -> Path:
    """Writes `probe` to the JSON file `path` atomically; returns the path."""
    path = Path(path)
    what = f"probe {path}"
    _check_kind(kind, what)
    record = {
        "format": FORMAT,
        "kind": kind,
        "model_identity": model_identity,
        "settings": _normalised(settings, what),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "c": float(probe.c),
        "cv_table": [[float(c), float(v)] for c, v in probe.cv_table.items()],
        "n_train": int(probe.n_train),
        "positive_rate": float(probe.positive_rate),
        "bias": float(probe.bias),
        **{
            name: np.asarray(getattr(probe, name), np.float64).tolist()
            for name in ("mean", "scale", "weight")
        },
    }
    write_atomic(path, json.dumps(record, indent=1) + "\n")
    return path


def _first_difference(saved: dict, wanted: dict) -> str:
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key, "<unset>"), wanted.get(key, "<unset>")
        if old != new:
            return f"{key}={old!r}, this run has {new!r}"
    return "other settings"


def load_probe(
    path: str | Path, *, kind: str, model_identity: str, settings: Mapping[str, Any]
) -> Probe:
    """Reads a probe written by `save_probe`, refusing (one-line CoreaError naming the file) a
    missing, unreadable or corrupt file, another kind, another model or other settings."""
    path = Path(path)
    what = f"probe {path}"
    _check_kind(kind, what)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CoreaError(f"{what}: cannot read it: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CoreaError(f"{what} is corrupt (not JSON: {e}); delete it to refit") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CoreaError(f"{what} is not a format-{FORMAT} probe file; delete it to refit")
    if record.get("kind") != kind:
        raise CoreaError(f"{what} holds a {record.get('kind')!r}, not a {kind!r}; use another path")
    if record.get("model_identity") != model_identity:
        raise CoreaError(
            f"{what} was fitted for model {record.get('model_identity')}, this SLM is "
            f"{model_identity}; delete it to refit, or point the probe path at another file"
        )
    wanted = _normalised(settings, what)
    if record.get("settings") != wanted:
        saved = record.get("settings") if isinstance(record.get("settings"), dict) else {}
        raise CoreaError(
            f"{what} was fitted with {_first_difference(saved, wanted)}; delete it to refit"
        )
    try:
        arrays = {n: np.asarray(record[n], np.float64) for n in ("mean", "scale", "weight")}
        probe = Probe(
            **arrays,
            bias=float(record["bias"]),
            c=float(record["c"]),
            cv_table={float(c): float(v) for c, v in record["cv_table"]},
            n_train=int(record["n_train"]),
            positive_rate=float(record["positive_rate"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CoreaError(f"{what} is corrupt (field {e}); delete it to refit") from None
    d = probe.weight.shape
    if len(d) != 1 or probe.mean.shape != d or probe.scale.shape != d:
        raise CoreaError(f"{what} is corrupt (mean, scale, weight shapes differ); delete it")
    if not all(np.all(np.isfinite(a)) for a in arrays.values()) or np.any(probe.scale <= 0):
        raise CoreaError(f"{what} is corrupt (non-finite weights or scale <= 0); delete it")
    return probe
