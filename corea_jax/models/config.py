"""Model architecture as a frozen dataclass, read from and written to HF `config.json`.

Qwen2.5 and Llama 3 are one decoder with a few flags (`qkv_bias`, `o_bias`, tied embeddings, RoPE
scaling); `ModelConfig` holds exactly those. `from_hf_config` reads both the transformers v5
layout (`rope_parameters`) and the legacy one (`rope_theta`, `rope_scaling`), and refuses
features the shared decoder does not implement (sliding-window attention, MLP bias, activations
other than SiLU) with an error that names the field, rather than silently computing something
else.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from corea_jax.errors import CoreaError

FAMILIES = ("qwen2", "llama")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling. `kind="llama3"` is Llama 3.1's piecewise rescaling."""

    kind: str = "llama3"
    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder hyperparameters; the comments give each one's axis letter (see `transformer`)."""

    family: str
    vocab_size: int  # V
    hidden_size: int  # D
    intermediate_size: int  # F, the SwiGLU width
    num_layers: int  # L
    num_heads: int  # N
    num_kv_heads: int  # K
    head_dim: int  # H
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10_000.0
    rope_scaling: RopeScaling | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32_768
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise CoreaError(f"ModelConfig.family: {self.family!r} is not one of {FAMILIES}")
        if self.num_heads % self.num_kv_heads:
            raise CoreaError(
                f"ModelConfig: num_heads={self.num_heads} is not a multiple of "
                f"num_kv_heads={self.num_kv_heads}"
            )

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

    def num_params(self) -> int:
        """Parameter count, computed from the shapes (checked against `jax.eval_shape`)."""
        d, f, h = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_heads * h, self.num_kv_heads * h
        attn = d * q + 2 * d * kv + q * d
        if self.qkv_bias:
            attn += q + 2 * kv
        if self.o_bias:
            attn += d
        layer = attn + 3 * d * f + 2 * d
        embed = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * layer + embed + d

    # -- HF config.json -----------------------------------------------------------------------

    @classmethod
    def from_hf_config(cls, source: str | Path | dict[str, Any]) -> ModelConfig:
        """Reads a HF `config.json` (path, model directory, or the parsed dict)."""
        where = "config"
        if not isinstance(source, dict):
            path = Path(source)
            if path.is_dir():
                path = path / "config.json"
            where = str(path)
            try:
                source = json.loads(path.read_text())
            except FileNotFoundError as e:
                raise CoreaError(f"{path}: file not found") from e
            except json.JSONDecodeError as e:
                raise CoreaError(f"{path}: not valid JSON ({e})") from e
        hf = source

        def need(key):
            if key not in hf:
                raise CoreaError(f"{where}: missing field '{key}'")
            return hf[key]

        model_type = need("model_type")
        if model_type not in FAMILIES:
            raise CoreaError(f"{where}: model_type {model_type!r} is not supported {FAMILIES}")
        if hf.get("hidden_act", "silu") != "silu":
            raise CoreaError(f"{where}: hidden_act {hf['hidden_act']!r} is not supported (silu)")
        if hf.get("mlp_bias", False):
            raise CoreaError(f"{where}: mlp_bias=true is not supported")
        if model_type == "qwen2" and hf.get("use_sliding_window", False):
            raise CoreaError(f"{where}: use_sliding_window=true is not supported")

        num_heads = need("num_attention_heads")
        hidden = need("hidden_size")
        theta, scaling = _read_rope(hf, where)
        attention_bias = bool(hf.get("attention_bias", False))
        return cls(
            family=model_type,
            vocab_size=need("vocab_size"),
            hidden_size=hidden,
            intermediate_size=need("intermediate_size"),
            num_layers=need("num_hidden_layers"),
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=hf.get("head_dim") or hidden // num_heads,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling=scaling,
            # Qwen2 always has q/k/v biases and no o_proj bias; Llama's `attention_bias` adds
            # biases to all four projections.
            qkv_bias=True if model_type == "qwen2" else attention_bias,
            o_bias=False if model_type == "qwen2" else attention_bias,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 32_768)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=_as_ids(hf.get("eos_token_id")),
        )

    def to_hf_config(self, dtype: str = "float32") -> dict[str, Any]:
        """A `config.json` dict that transformers (v4 and v5) loads as this architecture."""
        arch = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[self.family]
        out: dict[str, Any] = {
            "architectures": [arch],
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": dtype,
            "dtype": dtype,
            "use_cache": True,
            # Both RoPE layouts: the legacy keys for transformers v4, `rope_parameters` for v5.
            "rope_theta": self.rope_theta,
            "rope_scaling": _rope_dict(self.rope_scaling),
            "rope_parameters": {"rope_theta": self.rope_theta}
            | (_rope_dict(self.rope_scaling) or {"rope_type": "default"}),
        }
        if self.family == "llama":
            out["attention_bias"] = self.qkv_bias
            out["mlp_bias"] = False
        else:
            out["use_sliding_window"] = False
        if self.bos_token_id is not None:
            out["bos_token_id"] = self.bos_token_id
        if self.eos_token_id is not None:
            out["eos_token_id"] = (
                list(self.eos_token_id)
                if isinstance(self.eos_token_id, tuple)
                else self.eos_token_id
            )
        return out


def _as_ids(value):
    if isinstance(value, list):
        return tuple(value)
    return value


def _read_rope(hf: dict, where: str) -> tuple[float, RopeScaling | None]:
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        theta, scaling = params["rope_theta"], params
    else:
        theta, scaling = hf.get("rope_theta", 10_000.0), hf.get("rope_scaling")
    if not scaling:
        return float(theta), None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return float(theta), None
    if kind != "llama3":
        raise CoreaError(f"{where}: rope type {kind!r} is not supported (default, llama3)")
    try:
        return float(theta), RopeScaling(
            kind="llama3",
            factor=float(scaling["factor"]),
            low_freq_factor=float(scaling["low_freq_factor"]),
            high_freq_factor=float(scaling["high_freq_factor"]),
            original_max_position_embeddings=int(scaling["original_max_position_embeddings"]),
        )
    except KeyError as e:
        raise CoreaError(f"{where}: llama3 rope scaling is missing field {e}") from e


def _rope_dict(scaling: RopeScaling | None) -> dict | None:
    if scaling is None:
        return None
    return {
        "rope_type": scaling.kind,
        "factor": scaling.factor,
        "low_freq_factor": scaling.low_freq_factor,
        "high_freq_factor": scaling.high_freq_factor,
        "original_max_position_embeddings": scaling.original_max_position_embeddings,
    }
