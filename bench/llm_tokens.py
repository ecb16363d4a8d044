"""Tokens/s of the embedded local model (SmolLM2-135M on llama.cpp, CPU) through the
`local` provider, over a few plain, structured-output and tool-calling requests.

    uv run python bench/llm_tokens.py [--requests 6] [--max-tokens 96] [--model smollm2-135m]

`tokens_per_s` = output tokens / wall time of the chat calls (prompt processing, constrained
decoding and our translation included; the one-off model load is reported apart as `load_s`).
`median_request_tokens_per_s` is the median of the per-request rates (robust to one request
slowed by a busy machine); `decode_tokens_per_s` is llama.cpp's own generation rate (median).
The model load and a short warm-up request are excluded. The LAST line printed is the
JSON result. Takes well under a minute on an idle 2-core machine; on a busy one it stops
starting requests after `--budget-s` and reports what it measured (with the load average).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from cadenza_llm import ChatRequest, LLMSettings, LocalProvider, ToolSpec

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["card_declined", "insufficient_funds", "fraud", "other"]},
        "summary": {"type": "string"},
    },
    "required": ["category", "summary"],
}
TOOL = ToolSpec(
    name="get_transaction",
    description="Fetch a payment transaction by id",
    parameters={
        "type": "object",
        "properties": {"transaction_id": {"type": "string", "maxLength": 24}},
        "required": ["transaction_id"],
    },
)
PROMPTS = [
    {},
    {"response_schema": SCHEMA},
    {"tools": [TOOL]},
]


def request(model: str, i: int, max_tokens: int) -> ChatRequest:
    extra: dict[str, Any] = PROMPTS[i % len(PROMPTS)]
    return ChatRequest(
        model=model,
        messages=[
            {"role": "system", "content": "You help a payments operations team."},
            {
                "role": "user",
                "content": f"Payment #{i} failed with code 51. Explain what happened.",
            },
        ],
        max_tokens=max_tokens,
        **extra,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--budget-s", type=float, default=45.0, help="stop starting requests after this long"
    )
    args = parser.parse_args()

    provider = LocalProvider(LLMSettings())
    started = time.perf_counter()
    await provider.chat(
        ChatRequest(model=args.model, messages=[{"role": "user", "content": "hi"}], max_tokens=16)
    )
    load_s = time.perf_counter() - started

    output_tokens = prompt_tokens = 0
    wall = 0.0
    decode_rates: list[float] = []
    request_rates: list[float] = []
    done = 0
    for i in range(args.requests):
        if time.perf_counter() - started > args.budget_s:
            break  # a busy machine: report what was measured rather than overrun
        t0 = time.perf_counter()
        response = await provider.chat(request(args.model, i, args.max_tokens))
        elapsed = time.perf_counter() - t0
        wall += elapsed
        request_rates.append(response.usage.output_tokens / elapsed)
        done += 1
        output_tokens += response.usage.output_tokens
        prompt_tokens += response.usage.input_tokens
        timings = (response.raw or {}).get("timings") or {}
        if timings.get("predicted_per_second"):
            decode_rates.append(float(timings["predicted_per_second"]))
    print(
        json.dumps(
            {
                "bench": "llm_tokens",
                "provider": "local",
                "model": args.model,
                "requests": done,
                "output_tokens": output_tokens,
                "prompt_tokens": prompt_tokens,
                "tokens_per_s": round(output_tokens / wall, 1) if wall else None,
                "median_request_tokens_per_s": round(statistics.median(request_rates), 1)
                if request_rates
                else None,
                "decode_tokens_per_s": round(statistics.median(decode_rates), 1)
                if decode_rates
                else None,
                "mean_request_s": round(wall / done, 3) if done else None,
                "load_s": round(load_s, 2),
                "threads": LLMSettings().local_threads,
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
