"""`corea-jax generate`: sample completions from a HF model directory.

    corea-jax generate --model DIR (--prompt TEXT | --prompts-file FILE.jsonl) [--chat] [--n G]
        [--max-new-tokens C] [--temperature T] [--top-p P] [--top-k K] [--seed S]
        [--stop STRING ...] [--batch-size B] [--dtype float32|bfloat16] [--output FILE.jsonl]

A prompts file has one JSON object per line with `prompt` (text) or `messages` (a chat list).
With --chat a text prompt becomes one user message rendered with the model's chat template.
Output: one JSON line per sample with `prompt_index`, `sample_index`, `text`, `token_ids`,
`logprobs` (under the model, temperature 1) and `finish_reason` (eos, stop or length), to
--output (written whole, then moved into place) or to stdout. --temperature 0 is greedy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from corea_jax.errors import CoreaError

TAKES_CONFIG = False


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="HF model directory")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="one prompt text")
    src.add_argument("--prompts-file", type=Path, help="JSONL with `prompt` or `messages`")
    parser.add_argument("--chat", action="store_true", help="render with the chat template")
    parser.add_argument("--n", type=int, default=1, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per sampler call")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--output", type=Path, default=None, help="JSONL file (default stdout)")


def read_prompts(args) -> list[dict]:
    if args.prompt is not None:
        return [{"prompt": args.prompt}]
    path = args.prompts_file
    if not path.is_file():
        raise CoreaError(f"{path}: prompts file not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CoreaError(f"{path}:{line_no}: not valid JSON ({e.msg})") from e
            if not isinstance(row, dict) or not (
                isinstance(row.get("prompt"), str) or isinstance(row.get("messages"), list)
            ):
                raise CoreaError(f"{path}:{line_no}: needs a `prompt` string or `messages` list")
            rows.append(row)
    if not rows:
        raise CoreaError(f"{path}: no prompts")
    return rows


def prompt_text(row: dict, tokenizer, chat: bool) -> str:
    from corea_jax.models import render_chat

    if "messages" in row:
        return render_chat(tokenizer, row["messages"])
    if chat:
        return render_chat(tokenizer, [{"role": "user", "content": row["prompt"]}])
    return row["prompt"]


def run(args) -> int:
    import jax.numpy as jnp
    from tqdm import tqdm

    from corea_jax.models import load_model, load_tokenizer
    from corea_jax.sampling import Sampler, apply_stop_strings, make_method

    if args.n < 1 or args.batch_size < 1:
        raise CoreaError("--n and --batch-size must be >= 1")
    rows = read_prompts(args)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=jnp.dtype(args.dtype))
    sampler = Sampler.for_tokenizer(model, tokenizer)
    method = make_method(args.temperature, args.top_k, args.top_p)
    prompts = [
        tokenizer(prompt_text(r, tokenizer, args.chat), add_special_tokens=False)["input_ids"]
        for r in rows
    ]

    out_lines = []
    starts = range(0, len(prompts), args.batch_size)
    bar = tqdm(starts, desc="generate", unit="batch", disable=len(starts) < 2, file=sys.stderr)
    for start in bar:
        chunk = prompts[start : start + args.batch_size]
        batch = sampler.generate(
            chunk, max_new_tokens=args.max_new_tokens, n=args.n, method=method,
            seed=args.seed + start,
        )  # fmt: skip
        batch = apply_stop_strings(
            batch, lambda ids: tokenizer.decode(ids, skip_special_tokens=True), args.stop
        )
        for row in range(len(batch.lengths)):
            length = int(batch.lengths[row])
            out_lines.append(
                json.dumps(
                    {
                        "prompt_index": start + int(batch.prompt_index[row]),
                        "sample_index": row % args.n,
                        "text": batch.texts[row],
                        "token_ids": batch.tokens[row, :length].tolist(),
                        "logprobs": [round(float(x), 6) for x in batch.logprobs[row, :length]],
                        "finish_reason": batch.finish_reasons[row],
                    },
                    ensure_ascii=False,
                )
            )
    text = "\n".join(out_lines) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        from corea_jax.atomic_files import write_atomic

        write_atomic(args.output, text)
        print(f"wrote {len(out_lines)} samples to {args.output}", file=sys.stderr)
    return 0
