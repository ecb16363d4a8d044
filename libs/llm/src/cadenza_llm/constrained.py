"""Tool calling by constrained decoding, for models too small for native tool calling.

When tools are offered, the model must answer with ONE JSON object matching
``anyOf(tool branches..., final branch)``: ``{"tool": <name>, "arguments": <its schema>}`` or
``{"final": <answer>}``. llama.cpp turns that schema into a grammar, so even a 135M model
yields a syntactically valid call whose arguments satisfy the tool's schema. The protocol is
explained in the system prompt; earlier tool calls and results are rendered back into it so
the model sees them in later turns."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from .errors import InvalidOutputError
from .types import ChatRequest, ToolCall

STRING_ANSWER: dict[str, Any] = {"type": "string"}


def uses_protocol(request: ChatRequest) -> bool:
    """Tools are offered and may be called: the model speaks the JSON protocol."""
    return bool(request.tools) and request.tool_choice != "none"


def _hoist(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """Move a sub-schema's ``$defs``/``definitions`` to the root (renamed with ``prefix``) so
    its ``$ref``s still resolve once it is nested inside the protocol schema."""

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    for old in ("#/$defs/", "#/definitions/"):
                        if value.startswith(old):
                            value = "#/$defs/" + prefix + value[len(old) :]
                out[key] = rename(value)
            return out
        if isinstance(node, list):
            return [rename(v) for v in node]
        return node

    schema = copy.deepcopy(schema)
    local_defs = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}
    for name, sub in local_defs.items():
        defs[prefix + name] = rename(sub)
    return rename(schema)


def _branch(key: str, value: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    properties = {**(extra or {}), key: value}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def cap_strings(schema: dict[str, Any], max_chars: int | None) -> dict[str, Any]:
    """Give every string without a ``maxLength`` (and without ``enum``/``const``) one.

    A tiny model under a grammar can run on inside a string ("1234567890123...") until
    ``max_tokens`` cuts the JSON off; a length cap makes the grammar close the string."""
    if not max_chars:
        return schema

    def cap(node: Any) -> Any:
        if isinstance(node, list):
            return [cap(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {key: cap(value) for key, value in node.items()}
        types = node.get("type")
        is_string = types == "string" or (isinstance(types, list) and "string" in types)
        if is_string and not {"maxLength", "enum", "const"} & node.keys():
            out["maxLength"] = max_chars
        return out

    return cap(schema)


def protocol_schema(request: ChatRequest, max_string_chars: int | None = None) -> dict[str, Any]:
    """The JSON Schema the model's whole answer must match when tools are offered. Strings in
    tool arguments and in a structured final answer are capped at ``max_string_chars``."""
    defs: dict[str, Any] = {}
    branches = [
        _branch(
            "arguments",
            _hoist(cap_strings(tool.parameters, max_string_chars), f"{tool.name}__", defs),
            {"tool": {"const": tool.name}},
        )
        for tool in request.tools
    ]
    if request.tool_choice != "required":
        if request.response_schema is not None:
            answer = cap_strings(request.response_schema, max_string_chars)
        else:
            answer = STRING_ANSWER  # free text stays free
        branches.append(_branch("final", _hoist(answer, "final__", defs)))
    schema: dict[str, Any] = {"anyOf": branches}
    if defs:
        schema["$defs"] = defs
    return schema


def protocol_instructions(request: ChatRequest) -> str:
    lines = ["You can use these tools:"]
    for tool in request.tools:
        lines.append(f"- {tool.name}: {tool.description or 'no description'}")
        lines.append(f"  arguments schema: {json.dumps(tool.parameters, sort_keys=True)}")
    lines.append("")
    lines.append("Answer with exactly one JSON object and nothing else.")
    lines.append('To call a tool: {"tool": "<tool name>", "arguments": {...}}')
    if request.tool_choice == "required":
        lines.append("You must call one of the tools now.")
    else:
        final = "a JSON value matching the required schema" if request.response_schema else "text"
        lines.append(f'When you have the answer: {{"final": <{final}>}}')
    return "\n".join(lines)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return raw
    return raw


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def render_messages(request: ChatRequest, *, protocol: bool) -> list[dict[str, str]]:
    """Plain ``{role, content}`` messages a chat template without tool support accepts:
    assistant tool calls become the protocol JSON the model would have written, tool results
    become user turns ``Tool <name> returned: ...``."""
    tool_names: dict[str, str] = {}
    rendered: list[dict[str, str]] = []
    for message in request.messages:
        role = message["role"]
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content) if content else ""
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function") or call
                tool_names[str(call.get("id"))] = str(function.get("name"))
                calls.append(
                    json.dumps(
                        {
                            "tool": function.get("name"),
                            "arguments": _arguments(function.get("arguments")),
                        }
                    )
                )
            rendered.append({"role": "assistant", "content": "\n".join(calls)})
        elif role == "assistant" and protocol:
            rendered.append(
                {"role": "assistant", "content": json.dumps({"final": _maybe_json(text)})}
            )
        elif role == "tool":
            name = message.get("name") or tool_names.get(str(message.get("tool_call_id")), "tool")
            rendered.append({"role": "user", "content": f"Tool {name} returned: {text}"})
        else:
            rendered.append({"role": role, "content": text})
    if protocol:
        instructions = protocol_instructions(request)
        if rendered and rendered[0]["role"] == "system":
            rendered[0] = {
                "role": "system",
                "content": f"{rendered[0]['content']}\n\n{instructions}",
            }
        else:
            rendered.insert(0, {"role": "system", "content": instructions})
    return rendered


def previous_tool_calls(request: ChatRequest) -> int:
    return sum(len(m.get("tool_calls") or []) for m in request.messages if m["role"] == "assistant")


_FINAL_STRING = re.compile(r'\s*\{\s*"final"\s*:\s*"')


def _truncated_text_answer(text: str) -> str | None:
    """The text of a free-text ``{"final": "...`` answer cut off mid-string, if it is one."""
    match = _FINAL_STRING.match(text)
    if match is None:
        return None
    fragment = text[match.end() :]
    # Drop a few trailing characters at most: a half-written escape, or the closing `"}`.
    for end in range(len(fragment), max(len(fragment) - 8, -1), -1):
        try:
            value = json.loads(f'"{fragment[:end]}"')
        except json.JSONDecodeError:
            continue
        return str(value)
    return None


def parse_protocol_output(
    text: str, request: ChatRequest, finish_reason: str | None
) -> tuple[str | None, list[ToolCall]]:
    """The model's protocol JSON -> (final content, tool calls). Tool-call ids are numbered
    from the calls already in the conversation, so they are deterministic (cassette keys of
    later turns depend on them)."""
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as exc:
        partial = _truncated_text_answer(text) if request.response_schema is None else None
        if partial is not None and finish_reason == "length":
            return partial, []  # like any model cut off at max_tokens: the text so far
        hint = " (cut off at max_tokens: raise max_tokens)" if finish_reason == "length" else ""
        raise InvalidOutputError(
            f"local model output is not the expected JSON{hint}: {text[:200]!r}"
        ) from exc
    if isinstance(answer, dict) and isinstance(answer.get("tool"), str):
        names = {t.name for t in request.tools}
        if answer["tool"] not in names:  # the grammar prevents this; guard anyway
            raise InvalidOutputError(f"local model called unknown tool {answer['tool']!r}")
        arguments = answer.get("arguments")
        call = ToolCall(
            id=f"call_{previous_tool_calls(request) + 1}",
            name=answer["tool"],
            arguments=arguments if isinstance(arguments, dict) else {},
        )
        return None, [call]
    if isinstance(answer, dict) and "final" in answer:
        final = answer["final"]
        if isinstance(final, str) and request.response_schema is None:
            return final, []
        return json.dumps(final, ensure_ascii=False), []
    raise InvalidOutputError(f"local model output matches no protocol branch: {text[:200]!r}")
