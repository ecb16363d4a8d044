"""Built-ins for agents: `calculator` (safe arithmetic) and `current_time` (IANA zones).

The calculator is simpleeval restricted to numbers: literals, + - * / // % **, unary signs,
parentheses, a few math functions and `pi`/`e`. Everything else — names, strings,
attributes, subscripts, comparisons, keywords — is refused before evaluation, and every
intermediate result is bounded so `9**9**9` or a chain of huge products cannot eat the
worker's CPU or memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cadenza_events import NonRetryableError
from pydantic import BaseModel, ConfigDict, Field
from simpleeval import SimpleEval

from ..errors import parse_params
from .base import ToolContext

MAX_EXPRESSION_LENGTH = 500
MAX_INT_BITS = 4096
"""Largest integer any step may produce (~1233 decimal digits)."""
MAX_EXPONENT = 10_000

Number = int | float


class CalculatorError(NonRetryableError):
    code = "invalid_expression"


def _bounded(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"result too large (over {MAX_INT_BITS} bits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not a finite number (overflow)")
    return value


def _checked(fn: Callable[..., Number], symbol: str) -> Callable[..., Number]:
    def apply(*args: Number) -> Number:
        try:
            return _bounded(fn(*args))
        except ZeroDivisionError:
            raise CalculatorError(f"division by zero in '{symbol}'") from None
        except OverflowError:
            raise CalculatorError(f"'{symbol}' overflows") from None
        except ValueError as exc:  # math domain errors: sqrt(-1), log(0)
            raise CalculatorError(f"{symbol}: {exc}") from None

    return apply


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exponent} is too large (limit {MAX_EXPONENT})")
    # Refuse before computing: the size of an integer power is known in advance.
    exact = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if exact and abs(base) > 1 and exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise CalculatorError(f"result too large (over {MAX_INT_BITS} bits)")
    result = base**exponent
    if isinstance(result, complex):
        raise CalculatorError("a negative number to a fractional power is not a real number")
    return result


def _round(value: Number, ndigits: int = 0) -> Number:
    if not isinstance(ndigits, int) or abs(ndigits) > 100:
        raise CalculatorError("round: ndigits must be an integer between -100 and 100")
    return round(value, ndigits)


def _log(value: Number, base: Number = math.e) -> float:
    return math.log(value, base)


_OPERATORS: dict[type[ast.AST], Callable[..., Number]] = {
    ast.Add: _checked(operator.add, "+"),
    ast.Sub: _checked(operator.sub, "-"),
    ast.Mult: _checked(operator.mul, "*"),
    ast.Div: _checked(operator.truediv, "/"),
    ast.FloorDiv: _checked(operator.floordiv, "//"),
    ast.Mod: _checked(operator.mod, "%"),
    ast.Pow: _checked(_power, "**"),
    ast.USub: _checked(operator.neg, "-"),
    ast.UAdd: _checked(operator.pos, "+"),
}
_PLAIN_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": _log,
    "log10": math.log10,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
}
FUNCTIONS: dict[str, Callable[..., Number]] = {
    name: _checked(fn, name) for name, fn in _PLAIN_FUNCTIONS.items()
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
_MAX_ARGS = 50
_REFUSED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Compare: "comparison",
    ast.BoolOp: "and/or",
    ast.IfExp: "a conditional",
    ast.Lambda: "lambda",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.JoinedStr: "an f-string",
    ast.Starred: "unpacking (*)",
}


class _Arithmetic(SimpleEval):
    """simpleeval with only the nodes arithmetic needs; others raise FeatureNotAvailable."""

    def __init__(self) -> None:
        super().__init__(operators=dict(_OPERATORS), functions=dict(FUNCTIONS), names=CONSTANTS)
        self.nodes = {
            ast.Constant: self._number,
            ast.BinOp: self._eval_binop,
            ast.UnaryOp: self._eval_unaryop,
            ast.Call: self._call,
            ast.Name: self._eval_name,
        }

    def _eval(self, node: ast.AST) -> Any:
        if type(node) not in self.nodes:
            what = _REFUSED.get(type(node), type(node).__name__)
            raise CalculatorError(
                f"{what} is not allowed: use numbers, + - * / // % **, parentheses, "
                f"{', '.join(FUNCTIONS)} and pi, e"
            )
        return super()._eval(node)

    @staticmethod
    def _number(node: ast.Constant) -> Number:
        # bool is an int subclass, but `True` is a name to refuse, not a number.
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"only numbers are allowed, not {node.value!r}")
        return node.value

    def _call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            raise CalculatorError("only plain function calls like sqrt(2) are allowed")
        if node.keywords:
            raise CalculatorError(f"{node.func.id}(): keyword arguments are not allowed")
        if len(node.args) > _MAX_ARGS:
            raise CalculatorError(f"{node.func.id}(): at most {_MAX_ARGS} arguments")
        result: Number = self._eval_call(node)
        return result


def calculate(expression: str) -> Number:
    """Evaluate arithmetic safely; raises :class:`CalculatorError` naming what is wrong."""
    text = expression.strip()
    if not text:
        raise CalculatorError("the expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise CalculatorError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else "too deeply nested"
        raise CalculatorError(f"cannot parse {text!r}: {detail}") from None
    try:
        result = _Arithmetic().eval(text, previously_parsed=tree.body)
    except CalculatorError:
        raise
    except Exception as exc:  # simpleeval's refusals: unknown names/functions, node types
        message = str(exc) or type(exc).__name__
        raise CalculatorError(f"cannot evaluate {text!r}: {message}") from None
    if isinstance(result, bool) or not isinstance(result, int | float):
        raise CalculatorError(f"{text!r} is not arithmetic")
    return _bounded(result)


class CalculatorArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expression: str = Field(
        min_length=1,
        max_length=MAX_EXPRESSION_LENGTH,
        description="Arithmetic such as '(120.5 - 20) * 0.03' or 'sqrt(2) + max(1, 4)'. "
        "Operators: + - * / // % **; functions: " + ", ".join(FUNCTIONS) + "; constants: pi, e.",
    )


class CalculatorTool:
    """Evaluates an arithmetic expression: `{"expression": ..., "result": number}`."""

    name = "calculator"
    side_effects = False
    description = (
        "Evaluate an arithmetic expression exactly (numbers only), e.g. '1250 * 0.029 + 0.3'."
    )
    params_model = CalculatorArgs

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        args: CalculatorArgs = parse_params(CalculatorArgs, params, self.name)
        return {"expression": args.expression, "result": calculate(args.expression)}


class CurrentTimeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone name, e.g. 'UTC', 'Europe/Paris', 'America/New_York'.",
    )


class UnknownTimeZoneError(NonRetryableError):
    code = "unknown_timezone"


class CurrentTimeTool:
    """The current time in an IANA zone: `{timezone, iso, unix, weekday, utc_offset}`."""

    name = "current_time"
    side_effects = False
    description = "Get the current date and time in a time zone (IANA name, default UTC)."
    params_model = CurrentTimeArgs

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        args: CurrentTimeArgs = parse_params(CurrentTimeArgs, params, self.name)
        try:
            zone = ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            # ValueError: names that are not zone keys at all ('../etc', absolute paths).
            raise UnknownTimeZoneError(
                f"current_time: unknown time zone {args.timezone!r}; use an IANA name such "
                "as 'UTC' or 'Europe/Paris'"
            ) from None
        now = self._clock().astimezone(zone)
        offset = now.utcoffset()
        return {
            "timezone": args.timezone,
            "iso": now.isoformat(),
            "unix": round(now.timestamp(), 3),
            "weekday": now.strftime("%A"),
            "utc_offset": now.strftime("%z") if offset is not None else "+0000",
        }
