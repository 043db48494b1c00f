"""corea-jax: COREA (confidence-calibrated SLM/LLM cascades trained with GRPO) in JAX.

The public API is re-exported from the subpackages; see README.md for the file map.
"""

__version__ = "0.1.0"
