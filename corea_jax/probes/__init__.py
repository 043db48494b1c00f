"""Linear probes of the SLM's hidden states: P(correct) from what the model computed, not said.

  features.py   hidden_at_layer (the residual stream after layer k), completion / prompt
                features pooled per FeatureConfig ("last" token, "answer_mean" over the
                answer's tokens, "completion_mean"), answer_token_span
  logistic.py   Probe and fit_probe: L2 logistic regression (optax L-BFGS), C by stratified CV
  store.py      model_identity (a path-free digest of a checkpoint), save_probe / load_probe
                (JSON, atomic, refusing another model, kind or settings)

A "probe" reads a completion's features (it replaces the verbalised confidence); a "router"
reads the prompt's alone (it decides before anything is generated). Both are a `Probe`.
"""

from corea_jax.probes.features import (
    POOLINGS,
    FeatureConfig,
    answer_token_span,
    completion_features,
    hidden_at_layer,
    prompt_features,
)
from corea_jax.probes.logistic import DEFAULT_C_GRID, Probe, fit_probe
from corea_jax.probes.store import KINDS, load_probe, model_identity, save_probe

__all__ = [
    "DEFAULT_C_GRID",
    "KINDS",
    "POOLINGS",
    "FeatureConfig",
    "answer_token_span",
    "Probe",
    "completion_features",
    "fit_probe",
    "hidden_at_layer",
    "load_probe",
    "model_identity",
    "prompt_features",
    "save_probe",
]
