"""Expressions and templates: values, interpolation, attribute access, fan-in, the sandbox."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cadenza_workflow import (
    ExpressionError,
    build_context,
    compile_expression,
    compile_template,
    evaluate_condition,
    evaluate_for_each,
    is_template,
    render,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def ctx() -> dict[str, Any]:
    return build_context(
        inputs={"amount": 150, "id": "ord-7", "items": [3, 1, 2], "name": "  ada  "},
        tasks={
            "fetch": {
                "output": {"value": 21, "items": ["x"], "nested": {"deep": [1, {"k": "v"}]}},
                "status": "succeeded",
            },
            "price": {"output": [{"total": 2.5}, {"total": 4}], "status": "succeeded"},
            "maybe": {"status": "skipped"},
        },
        run_id="run-1",
    )


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${{ inputs.amount * 2 }}", 300),
        ("${{inputs.amount}}", 150),
        ("${{ inputs.amount > 100 }}", True),
        ("${{ inputs.items }}", [3, 1, 2]),
        ("${{ None }}", None),
        ("${{ null }}", None),
        ("${{ {'total': tasks.fetch.output.value} }}", {"total": 21}),
        ("${{ {'a': {'b': 1}}}}", {"a": {"b": 1}}),
        ("${{ '}}' }}", "}}"),
        ("${{ '${{' }}", "${{"),
        ("${{ (1, 2) }}", [1, 2]),
        ("${{ {2, 1} }}", [1, 2]),
        ("${{ {1: 'a'} }}", {"1": "a"}),
        ("${{ sorted(inputs.items) }}", [1, 2, 3]),
        ("${{ sorted(inputs.items, reverse=true)[0] }}", 3),
        ("${{ [x * 10 for x in inputs.items if x > 1] }}", [30, 20]),
        ("${{ {k: v * 2 for k, v in {'a': 1}.items()} }}", {"a": 2}),
        ("${{ inputs.name.strip().title() }}", "Ada"),
        ("${{ ', '.join(str(x) for x in inputs.items) }}", "3, 1, 2"),
        ("${{ run.id }}", "run-1"),
        ("${{ f'{inputs.id}-{inputs.amount:>5}' }}", "ord-7-  150"),
        ("${{ min(inputs.items) + max(inputs.items) + sum(inputs.items) }}", 10),
        ("${{ abs(-2) + round(2.567, 1) }}", 4.6),
        ("${{ any([0, 1]) and all([1]) and not bool(0) }}", True),
        ("${{ int('7') + float('0.5') }}", 7.5),
        ("${{ list(range(3)) }}", [0, 1, 2]),
        ("${{ 'big' if inputs.amount > 100 else 'small' }}", "big"),
    ],
)
def test_exact_template_yields_the_value(template: str, expected: Any, ctx: dict[str, Any]) -> None:
    assert render(template, ctx) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("order ${{ inputs.id }}", "order ord-7"),
        ("${{ inputs.amount }} units", "150 units"),
        ("a=${{ inputs.amount * 2 }}, b=${{ inputs.id }}", "a=300, b=ord-7"),
        ("flag: ${{ inputs.amount > 1 }}", "flag: true"),
        ("none: [${{ None }}]", "none: []"),
        ("list: ${{ inputs.items }}", "list: [3,1,2]"),
        ("obj: ${{ {'a': 'é'} }}", 'obj: {"a":"é"}'),
        ("float: ${{ 1 / 2 }}", "float: 0.5"),
        (" ${{ inputs.amount }}", " 150"),
        ("no template at all", "no template at all"),
        ("dollar $ and {{ braces }}", "dollar $ and {{ braces }}"),
    ],
)
def test_mixed_template_interpolates_text(
    template: str, expected: str, ctx: dict[str, Any]
) -> None:
    assert render(template, ctx) == expected


def test_render_recurses_through_dicts_and_lists(ctx: dict[str, Any]) -> None:
    params = {
        "value": "${{ inputs.amount * 2 }}",
        "label": "order ${{ inputs.id }}",
        "nested": {"list": ["${{ inputs.items[0] }}", 5, None, True], "${{ keys }}": "kept"},
    }
    assert render(params, ctx) == {
        "value": 300,
        "label": "order ord-7",
        "nested": {"list": [3, 5, None, True], "${{ keys }}": "kept"},
    }


def test_attribute_access_on_plain_dicts(ctx: dict[str, Any]) -> None:
    assert render("${{ tasks.fetch.output.nested.deep[1].k }}", ctx) == "v"
    assert render("${{ tasks.fetch['output']['value'] }}", ctx) == 21
    assert render("${{ tasks.fetch.status }}", ctx) == "succeeded"
    # a key shadows a dict method of the same name
    assert render("${{ tasks.fetch.output.items }}", ctx) == ["x"]
    with pytest.raises(ExpressionError, match="not callable"):
        render("${{ tasks.fetch.output.items() }}", ctx)
    assert render("${{ list(tasks.fetch.keys()) }}", ctx) == ["output", "status", "error"]
    assert render("${{ tasks.fetch.output.get('missing', 'dflt') }}", ctx) == "dflt"
    assert render("${{ tasks.maybe.output }}", ctx) is None
    with pytest.raises(ExpressionError, match="no key 'nope'"):
        render("${{ tasks.fetch.output.nope }}", ctx)
    with pytest.raises(ExpressionError, match="cannot read 'x' of null"):
        render("${{ tasks.maybe.output.x }}", ctx)


def test_fan_in_lists(ctx: dict[str, Any]) -> None:
    assert render("${{ [p.total for p in tasks.price.output] }}", ctx) == [2.5, 4]
    assert render("${{ sum(p.total for p in tasks.price.output) }}", ctx) == 6.5
    assert render("${{ len(tasks.price.output) }}", ctx) == 2


def test_item_and_index(ctx: dict[str, Any]) -> None:
    items = evaluate_for_each("inputs.items", ctx)
    assert items == [3, 1, 2]
    rendered = [
        render(
            {"n": "${{ item * 2 }}", "label": "#${{ index }}"},
            build_context(inputs=ctx["inputs"], run_id="r", item=item, index=i),
        )
        for i, item in enumerate(items)
    ]
    assert rendered == [{"n": 6, "label": "#0"}, {"n": 2, "label": "#1"}, {"n": 4, "label": "#2"}]
    assert evaluate_for_each(["${{ inputs.id }}", "b"], ctx) == ["ord-7", "b"]
    with pytest.raises(ExpressionError, match="must produce a list, got integer"):
        evaluate_for_each("inputs.amount", ctx)
    with pytest.raises(ExpressionError, match="max 10000"):
        evaluate_for_each("list(range(5001)) + list(range(5000))", ctx)


def test_conditions(ctx: dict[str, Any]) -> None:
    assert evaluate_condition(None, ctx) is True
    assert evaluate_condition("inputs.amount > 100", ctx) is True
    assert evaluate_condition("${{ inputs.amount > 1000 }}", ctx) is False
    assert evaluate_condition("tasks.maybe.status == 'skipped'", ctx) is True
    assert evaluate_condition("inputs.items", ctx) is True


def test_compile_records_references() -> None:
    expr = compile_expression(
        "tasks.a.output.x + tasks['b'].status + inputs.n + len([t for t in inputs.m])"
    )
    assert expr.names == {"tasks", "inputs"}
    assert expr.task_refs == {"a", "b"}
    assert expr.input_refs == {"n", "m"}
    shadowed = compile_expression("[tasks for tasks in inputs.xs]")
    assert shadowed.task_refs == frozenset()
    assert compile_expression("item.x + index").names == {"item", "index"}
    assert compile_expression("${{ inputs.a }}").input_refs == {"a"}
    assert compile_template("a ${{ inputs.a }} b ${{ tasks.t.output }}").exact is None
    assert len(compile_template("a ${{ inputs.a }} b ${{ tasks.t.output }}").expressions) == 2


def test_is_template() -> None:
    assert is_template("${{ x }}")
    assert is_template("a ${{ x }} b")
    assert not is_template("plain")
    assert not is_template("{{ x }}")
    assert not is_template(3)


def test_evaluation_does_not_mutate_the_context(ctx: dict[str, Any]) -> None:
    before = copy.deepcopy(ctx)
    render("${{ sorted(inputs.items) }}", ctx)
    with pytest.raises(ExpressionError):
        render("${{ inputs.items.sort() }}", ctx)
    with pytest.raises(ExpressionError):
        render("${{ tasks.fetch.output.update({'value': 0}) }}", ctx)
    assert ctx == before


def test_expression_error_is_typed(ctx: dict[str, Any]) -> None:
    with pytest.raises(ExpressionError) as info:
        render("${{ 1 / 0 }}", ctx)
    assert info.value.expression == "1 / 0"
    assert "ZeroDivisionError" in info.value.message
    assert info.value.to_dict()["code"] == "invalid_expression"
    assert info.value.retryable is False


# --------------------------------------------------------------------------- sandbox


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('id')", "method 'system' is not allowed"),
        ("inputs.__class__", "attribute '__class__' is not allowed"),
        ("inputs.items.__class__.__bases__", "attribute '__bases__' is not allowed"),
        ("''.__class__.__mro__", "attribute '__mro__' is not allowed"),
        ("(1).real", None),
        ("inputs.id.format(x=1)", "method 'format' is not allowed"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("getattr(inputs, 'x')", "unknown function 'getattr'"),
        ("type(inputs)", "unknown function 'type'"),
        ("lambda: 1", "lambda is not allowed"),
        ("(x := 1)", "assignment (:=) is not allowed"),
        ("{x for x in inputs.items}", "set comprehension is not allowed"),
        ("inputs.items.append(1)", "method 'append' is not allowed"),
        ("f(*inputs.items)", "unknown function 'f'"),
        ("len(*inputs.items)", "'*' arguments are not allowed"),
        ("dict(**inputs)", "'**' arguments are not allowed"),
        ("b'bytes'", "bytes literals are not allowed"),
        ("a = 1", "invalid syntax"),
        ("1; 2", "invalid syntax"),
        ("", "empty expression"),
    ],
)
def test_sandbox_refuses_at_compile_time(expression: str, fragment: str | None) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(expression).evaluate(build_context(inputs={"items": [1], "id": "x"}))
    if fragment is not None:
        assert fragment in info.value.message


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("9 ** 9 ** 9", "power would exceed"),
        ("2 ** 100000", "power would exceed"),
        ("10.0 ** 400", "power overflows"),
        ("(10 ** 2000) * (10 ** 2000)", "product would exceed"),
        ("1 << 100000", "shift would exceed"),
        ("'x' * 10 ** 7", "repetition is limited"),
        ("[0] * 10 ** 7", "repetition is limited"),
        ("[[1] * 10000] * 10000", "value too large"),
        ("[[[1] * 10000] * 100] * 1000", "value too large"),
        ("[['x' * 100000] * 100 for i in range(100)]", "value too large"),
        ("('x' * 100000) + ('y' * 100000)", "concatenation is limited"),
        ("('x' * 100000).join(['a'] * 100000)", "join() result is limited"),
        ("('x' * 1000).replace('x', 'y' * 1000)", "replace() result is limited"),
        ("'%999999999s' % 'a'", "'%' string formatting is not available"),
        ("f'{1:>999999999}'", "format widths are limited"),
        ("range(10 ** 9)", "range() is limited"),
        ("[x for x in range(10000) for y in range(10000)]", "Comprehension generates too many"),
        ("sum([[1]] * 3, [])", "sum() adds numbers only"),
        ("'a'.center(10 ** 9)", "method 'center' is not allowed"),
        ("float('inf')", "not a JSON number"),
    ],
)
def test_sandbox_limits(expression: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(expression).evaluate(build_context(inputs={}))
    assert fragment in info.value.message


def test_large_context_values_are_readable() -> None:
    rows = [{"n": i, "text": "x" * 100} for i in range(100_000)]  # 300k nodes, 10M chars
    context = build_context(
        inputs={"rows": rows},
        tasks={"big": {"output": rows, "status": "succeeded"}, "small": {"output": 1}},
    )
    assert compile_expression("len(inputs.rows)").evaluate(context) == 100_000
    assert compile_expression("inputs.rows[-1].n").evaluate(context) == 99_999
    assert compile_expression("len(inputs['rows'][10:])").evaluate(context) == 99_990
    assert compile_expression("tasks.small.output + len(tasks)").evaluate(context) == 3
    assert len(compile_expression("tasks.big.output").evaluate(context)) == 100_000
    # ...but building something large from them is still refused
    with pytest.raises(ExpressionError, match="value too large"):
        compile_expression("[tasks.big.output] * 2").evaluate(context)
    with pytest.raises(ExpressionError, match="value too large"):
        compile_expression("[inputs for i in range(100)]").evaluate(context)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("${{ }}", "empty expression"),
        ("x ${{ inputs.a", "unterminated"),
        ("${{ inputs.a + }}", "invalid syntax"),
        ("${{ inputs.__dict__ }}", "attribute '__dict__' is not allowed"),
        ("${{ (" + "}}" * 10_000, "'(' was never closed"),
        ("${{ " + "a" * 20_000 + " }}", "too long"),
    ],
)
def test_bad_templates(template: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_template(template)
    assert fragment in info.value.message
