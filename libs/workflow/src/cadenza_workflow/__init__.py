"""Cadenza workflow specs: models, parsing (YAML, JSON, React Flow), validation,
sandboxed expressions and the published JSON Schema.

Typical use::

    spec = parse_spec(text, content_type="application/yaml")
    validate_spec(spec, known_tools={"transform", "http_request"})
    inputs = resolve_inputs(spec, {"amount": 250})
    params = render(spec.task("fetch").with_, build_context(inputs=inputs, run_id=run_id))
"""

from .agent import (
    AGENT_REF_PATTERN,
    AGENT_SCHEMA_ID,
    AgentBudget,
    AgentSpec,
    AgentValidationError,
    agent_json_schema,
    format_agent_ref,
    load_agent,
    parse_agent,
    parse_agent_ref,
    validate_agent,
)
from .approval import ApprovalPolicy, ApprovalRule, TaskApproval, approval_rule, merge_approval
from .errors import ErrorCode, ExpressionError, SpecError, SpecValidationError
from .expressions import (
    CONTEXT_NAMES,
    MAX_FAN_OUT,
    RUN_FIELDS,
    TASK_FIELDS,
    TASK_STATUSES,
    Expression,
    Template,
    build_context,
    compile_expression,
    compile_template,
    evaluate_condition,
    evaluate_for_each,
    find_templates,
    is_template,
    render,
)
from .guardrails import (
    ACTION_STRICTNESS,
    PII_ENTITIES,
    Budget,
    BudgetRaise,
    GuardrailPolicy,
    PiiPolicy,
    combine,
    run_budget,
    tighter,
)
from .inputs import coerce_input, json_type_name, resolve_inputs
from .reactflow import from_react_flow, is_react_flow
from .schema import WORKFLOW_SCHEMA_ID, workflow_json_schema
from .spec import (
    MAX_VERSION,
    InputSpec,
    InputType,
    RetryPolicy,
    TaskKind,
    TaskSpec,
    WorkflowSpec,
    parse_spec,
)
from .tools import BUILTIN_TOOLS
from .validate import load_spec, topological_order, validate_spec

__all__ = [
    "ACTION_STRICTNESS",
    "AGENT_REF_PATTERN",
    "AGENT_SCHEMA_ID",
    "BUILTIN_TOOLS",
    "CONTEXT_NAMES",
    "MAX_FAN_OUT",
    "MAX_VERSION",
    "PII_ENTITIES",
    "RUN_FIELDS",
    "TASK_FIELDS",
    "TASK_STATUSES",
    "WORKFLOW_SCHEMA_ID",
    "AgentBudget",
    "AgentSpec",
    "AgentValidationError",
    "ApprovalPolicy",
    "ApprovalRule",
    "Budget",
    "BudgetRaise",
    "ErrorCode",
    "Expression",
    "ExpressionError",
    "GuardrailPolicy",
    "InputSpec",
    "InputType",
    "PiiPolicy",
    "RetryPolicy",
    "SpecError",
    "SpecValidationError",
    "TaskApproval",
    "TaskKind",
    "TaskSpec",
    "Template",
    "WorkflowSpec",
    "agent_json_schema",
    "approval_rule",
    "build_context",
    "coerce_input",
    "combine",
    "compile_expression",
    "compile_template",
    "evaluate_condition",
    "evaluate_for_each",
    "find_templates",
    "format_agent_ref",
    "from_react_flow",
    "is_react_flow",
    "is_template",
    "json_type_name",
    "load_agent",
    "load_spec",
    "merge_approval",
    "parse_agent",
    "parse_agent_ref",
    "parse_spec",
    "render",
    "resolve_inputs",
    "run_budget",
    "tighter",
    "topological_order",
    "validate_agent",
    "validate_spec",
    "workflow_json_schema",
]
