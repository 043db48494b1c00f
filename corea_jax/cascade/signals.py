"""Step 1b of the cascade: the fitted confidence signals, "probe" and "router", per question.

`fitted_scores(cfg, workdir, answerer, questions, slm, calibration)` adds, to each SLM row,
`probe` (the probability that the SLM's answer is right, from a logistic regression on its
hidden state at the end of the answer) and/or `router` (the same from the hidden state at the
last prompt token: known after one prefill, before anything is generated), as configured in
`SignalsConfig` (`cfg.signals`). The models are the SLM's own (`corea_jax.probes`).

How it avoids fooling itself:
- Fitted on the calibration split only, pooled over the configured datasets; the labels are
  the SLM's graded answers there. Test questions are scored by the probe fitted on all of the
  calibration split; calibration questions by cross-fitting (`folds` folds, each scored by a
  probe fitted on the others at the chosen L2 strength), so the tau chosen there sees scores
  as noisy as those it will meet on the test split.
- The probe is saved as `probes/probe.json` / `probes/router.json` (weights, the model's
  identity, the settings and a digest of the calibration data it was fitted on) and reused on
  a re-run with the same model, settings and data; the same file for another model is refused
  (`corea_jax.probes.load_probe`). With `signals.probe_dir` set, the probes there are loaded
  instead of fitted (the calibration questions are then scored by that probe too).
- Features are cached in `slm/NAME.features.npz` under a key of the SLM row (model, sampling,
  prompt) and the feature settings, so a re-run does no forward pass.

Where a probe cannot be fitted (a calibration split where the SLM is always right or always
wrong, or too small for the folds), the signal's scores are None and the report says why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import atomic_path
from corea_jax.cascade.settings import CascadeConfig, SignalsConfig
from corea_jax.errors import CoreaError


@dataclasses.dataclass(frozen=True)
class FitReport:
    """What was fitted for one signal: the chosen L2 strength, sizes, and why not, if not."""

    signal: str
    fitted: bool
    note: str = ""
    c: float | None = None
    n_train: int = 0
    positive_rate: float | None = None
    reused: bool = False
    feature_seconds: float = 0.0  # the forward passes of this run (0 when cached)
    fit_seconds: float = 0.0  # cross-validation, the final fit and the cross-fitting

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _feature_settings(signals: SignalsConfig, signal: str) -> dict:
    if signal == "probe":
        return {"layer": signals.probe_layer, "pooling": signals.probe_pooling}
    return {"layer": signals.router_layer, "pooling": "prompt_last"}


def features(answerer, workdir: Path, name: str, records, templates, rows, signal, signals):
    """[Q, D] float32 features of one dataset's questions for `signal`, cached in
    `workdir/slm/NAME.features.npz` (a row's entry is keyed by its SLM cache key and the
    feature settings, so changing either recomputes just what changed)."""
    from corea_jax.probes import (
        FeatureConfig,
        answer_token_span,
        completion_features,
        prompt_features,
    )

    settings = _feature_settings(signals, signal)
    tag = json.dumps(settings, sort_keys=True)
    keys = [hashlib.sha256(f"{r['key']}|{signal}|{tag}".encode()).hexdigest() for r in rows]
    path = workdir / "slm" / f"{name}.features.npz"
    cached = _read_features(path)
    missing = [i for i, k in enumerate(keys) if k not in cached]
    if missing:
        print(
            f"corea-jax: {name}: {signal} features of {len(missing)} questions (one forward "
            "pass each)",
            file=sys.stderr,
        )
        model = answerer.model()
        prompts = answerer.prompt_ids([records[i] for i in missing], templates)
        if signal == "router":
            new = prompt_features(model, prompts, signals.router_layer, signals.feature_batch)
        else:
            encoded = [
                answerer.tokenizer(
                    rows[i]["text"], add_special_tokens=False, return_offsets_mapping=True
                )
                for i in missing
            ]
            completions = [list(e["input_ids"]) for e in encoded]
            spans = [
                answer_token_span(e["offset_mapping"], rows[i]["text"])
                for e, i in zip(encoded, missing, strict=True)
            ]
            cfg = FeatureConfig(
                layer=signals.probe_layer,
                pooling=signals.probe_pooling,
                batch_size=signals.feature_batch,
            )
            new = completion_features(model, prompts, completions, cfg, spans)
        for i, f in zip(missing, new, strict=True):
            cached[keys[i]] = np.asarray(f, np.float32)
        _write_features(path, cached)
    return np.stack([cached[k] for k in keys])


def _read_features(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        with np.load(path) as f:
            return dict(zip(f["keys"].tolist(), f["values"], strict=True))
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is the same error
        raise CoreaError(
            f"{path}: unreadable feature cache ({exc}); delete it to recompute"
        ) from None


def _write_features(path: Path, table: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, keys=np.array(list(table)), values=np.stack(list(table.values())))


def _data_digest(keys, labels) -> str:
    h = hashlib.sha256()
    for k, y in zip(keys, labels, strict=True):
        h.update(f"{k}:{int(y)}\n".encode())
    return h.hexdigest()


def fitted_scores(
    cfg: CascadeConfig, workdir: Path, answerer, questions: dict, slm: dict, calibration: dict
) -> dict[str, FitReport]:
    """Adds `probe` / `router` scores (or None) to every row of `slm` (`{name: [row]}`, in
    place); `calibration` is `{name: bool [Q]}`. Returns a `FitReport` per fitted signal."""
    signals = cfg.signals
    reports = {}
    if not signals.fitted:
        return reports
    from corea_jax.probes import model_identity

    identity = model_identity(answerer.model_dir)
    for signal in signals.fitted:
        start = time.perf_counter()
        feats = {
            name: features(answerer, workdir, name, records, templates, slm[name], signal, signals)
            for name, (records, templates) in questions.items()
        }
        feature_seconds = time.perf_counter() - start
        labels = {n: np.array([r["correct"] for r in slm[n]], bool) for n in questions}
        keys_cal = [
            r["key"] for n in questions for r, m in zip(slm[n], calibration[n], strict=True) if m
        ]
        y_cal = np.concatenate([labels[n][calibration[n]] for n in questions])
        settings = {
            **_feature_settings(signals, signal),
            "c_grid": list(signals.c_grid),
            "folds": signals.folds,
            "seed": signals.seed,
            "calibration_data": _data_digest(keys_cal, y_cal),
        }
        groups = [
            f"{n}|{r['id']}"
            for n in questions
            for r, m in zip(slm[n], calibration[n], strict=True)
            if m
        ]
        start = time.perf_counter()
        scores, report = _scores(
            signal, signals, workdir, identity, settings, feats, labels, calibration, groups
        )
        reports[signal] = dataclasses.replace(
            report, feature_seconds=round(feature_seconds, 2),
            fit_seconds=round(time.perf_counter() - start, 2),
        )  # fmt: skip
        for name in questions:
            for row, value in zip(slm[name], scores[name], strict=True):
                row[signal] = None if value is None else round(float(value), 6)
    return reports


def _scores(signal, signals, workdir, identity, settings, feats, labels, calibration, groups):
    """`({name: [Q] scores or Nones}, FitReport)` for one fitted signal."""
    from corea_jax.probes import load_probe, save_probe

    names = list(feats)
    if signals.probe_dir:  # a probe fitted elsewhere: it scores every question
        path = Path(signals.probe_dir) / f"{signal}.json"
        saved = _settings_in(path)
        for key, value in _feature_settings(signals, signal).items():
            if path.exists() and saved.get(key) != value:
                raise CoreaError(
                    f"probe {path} reads {key}={saved.get(key)!r}, this run {value!r}; set "
                    f"signals.{signal}_{key} to match or refit"
                )
        probe = load_probe(path, kind=signal, model_identity=identity, settings=saved)
        report = FitReport(signal, True, f"loaded from {path}", probe.c, probe.n_train,
                           probe.positive_rate, reused=True)  # fmt: skip
        return {n: probe.predict(feats[n]) for n in names}, report
    x_cal = np.concatenate([feats[n][calibration[n]] for n in names])
    y_cal = np.concatenate([labels[n][calibration[n]] for n in names])
    path = workdir / "probes" / f"{signal}.json"
    probe = _saved(path, signal, identity, settings, load_probe)
    try:
        if probe is None:
            probe = fit_probe_cv(x_cal, y_cal, signals, groups)
            save_probe(path, probe, kind=signal, model_identity=identity, settings=settings)
            reused = False
        else:
            reused = True
        oof = out_of_fold(x_cal, y_cal, probe.c, signals, groups)
    except CoreaError as exc:
        print(f"corea-jax: signal {signal}: not fitted: {exc}", file=sys.stderr)
        return {n: [None] * feats[n].shape[0] for n in names}, FitReport(signal, False, str(exc))
    scores, start = {}, 0
    for n in names:
        value = np.asarray(probe.predict(feats[n]), np.float64)
        count = int(calibration[n].sum())
        value[calibration[n]] = oof[start : start + count]
        start += count
        scores[n] = value
    report = FitReport(signal, True, "", float(probe.c), int(probe.n_train),
                       float(probe.positive_rate), reused)  # fmt: skip
    return scores, report


def _saved(path: Path, signal, identity, settings, load_probe):
    """The probe saved at `path` if it was fitted with these settings on this data; None if
    absent or fitted otherwise (it is then refitted and replaced). One fitted for another
    model is refused: the workdir belongs to another SLM."""
    if not path.exists():
        return None
    load_probe(path, kind=signal, model_identity=identity, settings=_settings_in(path))
    try:
        return load_probe(path, kind=signal, model_identity=identity, settings=settings)
    except CoreaError:
        return None


def _settings_in(path: Path) -> dict:
    """The settings a probe file was saved with ({} when unreadable: `load_probe` then says
    what is wrong with the file)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get("settings")
    except (OSError, ValueError, AttributeError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _check_classes(y: np.ndarray) -> int:
    """The number of examples of the rarer class; raises when a probe cannot be fitted."""
    n_pos, n = int(y.sum()), int(y.shape[0])
    if min(n_pos, n - n_pos) < 2:
        raise CoreaError(
            f"{n} calibration answers, {n_pos} right: a probe needs at least 2 right and 2 "
            "wrong answers on the calibration split"
        )
    return min(n_pos, n - n_pos)


def fit_probe_cv(x: np.ndarray, y: np.ndarray, signals: SignalsConfig, groups=None):
    """The probe on all of `x` [N, D], `y` [N], its L2 strength chosen by CV over `c_grid`
    (folds by `groups` [N], the question ids, when a question has several rows)."""
    from corea_jax.probes import fit_probe

    _check_classes(y)
    return fit_probe(
        x, y, c_grid=signals.c_grid, folds=signals.folds, seed=signals.seed, groups=groups
    )


def out_of_fold(
    x: np.ndarray, y: np.ndarray, c: float, signals: SignalsConfig, groups=None
) -> np.ndarray:
    """[N] each example's probability from a probe (L2 strength `c`) fitted on the other folds
    (stratified; `signals.folds` of them, fewer when the rarer class has fewer examples).

    `groups` [N] (e.g. question ids when each question has several SLM samples): a group's
    examples share a fold, so no example is scored by a probe fitted on its own question."""
    from corea_jax.probes import fit_probe
    from corea_jax.probes.logistic import cv_folds

    folds = min(signals.folds, _check_classes(y))
    fold = cv_folds(y, folds, signals.seed, groups)
    oof = np.empty(y.shape[0], np.float64)
    for k in range(folds):
        held, rest = fold == k, y[fold != k]
        if min(int(rest.sum()), int((~rest).sum())) < 2:  # too few left to fit: the base rate
            oof[held] = rest.mean()
            continue
        sub = fit_probe(x[~held], rest, c_grid=(c,), folds=2, seed=signals.seed)
        oof[held] = sub.predict(x[held])
    return oof
