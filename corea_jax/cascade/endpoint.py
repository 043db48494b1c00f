"""Where the LLM is and how to call it: endpoint, sampling parameters, retries, client options.

Frozen dataclasses, built from the config at the entry point and passed to `LLMClient`. The API
key is never a field: `LLMEndpoint.api_key_env` *names* the environment variable holding it.

Each default lives on its field, with the reason beside it (all are [open] parameters: nothing
is prescribed); `corea_jax.cascade.settings.LLMConfig` and `configs/eval_common.py` read them from
here.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re

from corea_jax.cascade.cache import redact_url
from corea_jax.errors import CoreaError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_KEY = "EMPTY"  # what vLLM / SGLang accept when they run without authentication
USAGE_MODES = ("api", "counted")  # ClientConfig.usage


@dataclasses.dataclass(frozen=True)
class LLMEndpoint:
    """Where the LLM is: an OpenAI-compatible `base_url` (".../v1"), the `model` name it serves,
    and the *name* of the environment variable holding the API key (None: no key, "EMPTY" is
    sent, as vLLM and SGLang expect)."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise CoreaError(f"llm.base_url {redact_url(self.base_url)!r}: expected http(s)://...")
        if not self.model:
            raise CoreaError("llm.model: empty model name")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            # Never echo the value: it may be the key itself, pasted into the wrong field.
            raise CoreaError(
                "llm.api_key_env must be the *name* of an environment variable (letters, digits, "
                "underscores), not the key itself"
            )

    def read_api_key(self) -> str:
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise CoreaError(
                f"llm.api_key_env: environment variable {self.api_key_env} is not set or empty"
            )
        return key


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters sent with every request (None: not sent). They are part of the cache
    key, so changing one makes new calls."""

    temperature: float | None = 0.0
    top_p: float | None = None
    max_tokens: int | None = 2048  # the paper's response length
    seed: int | None = None
    stop: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, object]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["stop"] is not None:
            out["stop"] = list(out["stop"])
        return {k: v for k, v in out.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Retries of one request: `max_attempts` calls in all, exponential backoff with jitter."""

    max_attempts: int = 6
    initial_backoff_s: float = 1.0  # the backoff starts here and doubles (`multiplier`) ...
    max_backoff_s: float = 60.0  # ... up to this
    multiplier: float = 2.0
    # Each delay is drawn uniformly from [1 - jitter, 1] x backoff, so clients spread out.
    jitter: float = 0.5
    # A server's Retry-After replaces the backoff, capped here and stretched by up to 5% so
    # waiting clients do not return in step.
    max_retry_after_s: float = 120.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise CoreaError(f"RetryPolicy.max_attempts={self.max_attempts}: must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise CoreaError(f"RetryPolicy.jitter={self.jitter}: must be in [0, 1]")

    def delay(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after the `failures`-th failed attempt (1-based)."""
        if retry_after is not None:
            # Honour the server, with a little spread so waiting clients do not return in step.
            wait = min(max(retry_after, 0.0), self.max_retry_after_s)
            return wait * (1.0 + 0.1 * self.jitter * rng.random())
        backoff = min(
            self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (failures - 1)
        )
        return backoff * (1.0 - self.jitter * rng.random())


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Concurrency, timeouts (seconds), retries and the failure budget of an `LLMClient`."""

    concurrency: int = 16
    timeout_s: float = 300.0  # a 2k-token answer from a 32B model at ~30 tokens/s, plus queueing
    connect_timeout_s: float = 10.0
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    max_failed_questions: int = 0  # any question failing every attempt stops the run
    # The usage estimate (characters per token) when a server reports no usage and no
    # tokenizer is given.
    chars_per_token: float = 4.0
    # Whose token counts an answer is billed at: "api" the server's `usage` (the client's
    # counter only where a server omits it), what a provider bills [open]; "counted" the
    # client's counter on every answer, cached ones included (`LLMClient`'s `count_tokens`).
    usage: str = "api"

    def __post_init__(self):
        if self.concurrency < 1:
            raise CoreaError(f"ClientConfig.concurrency={self.concurrency}: must be >= 1")
        if not self.timeout_s > 0:
            raise CoreaError(f"ClientConfig.timeout_s={self.timeout_s}: must be > 0")
        if self.usage not in USAGE_MODES:
            raise CoreaError(f"ClientConfig.usage={self.usage!r}: choose from {USAGE_MODES}")
