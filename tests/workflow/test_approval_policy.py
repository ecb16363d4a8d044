"""Which tool calls need approval: the default rule for http_request writes, the agent's
rules (tool, method, host, sandboxed expression) and tools that always need it."""

from __future__ import annotations

import pytest
from cadenza_workflow import (
    ApprovalPolicy,
    ApprovalRule,
    SpecValidationError,
    TaskApproval,
    approval_rule,
    merge_approval,
    parse_agent,
    parse_spec,
)
from cadenza_workflow.agent import AgentValidationError

pytestmark = pytest.mark.unit

DELETE = {"url": "https://shop.example/orders/7", "method": "DELETE"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "delete"])
def test_http_writes_to_hosts_not_allowlisted_need_approval_by_default(method: str) -> None:
    args = {"url": "https://shop.example/x", "method": method}
    rule = approval_rule(None, "http_request", args)
    assert rule is not None
    assert "shop.example" in rule


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_http_reads_need_no_approval(method: str) -> None:
    assert (
        approval_rule(None, "http_request", {"url": "https://a.example", "method": method}) is None
    )
    assert approval_rule(None, "http_request", {"url": "https://a.example"}) is None


def test_allowlisted_hosts_are_written_to_freely() -> None:
    assert approval_rule(None, "http_request", DELETE, allow_hosts=("*.example",)) is None
    policy = ApprovalPolicy(allow_hosts=["shop.example"])
    assert approval_rule(policy, "http_request", DELETE) is None
    assert (
        approval_rule(policy, "http_request", {**DELETE, "url": "https://evil.test/"}) is not None
    )
    assert approval_rule(ApprovalPolicy(http_writes=False), "http_request", DELETE) is None


def test_rules_match_on_tool_method_host_and_expression() -> None:
    policy = ApprovalPolicy(
        http_writes=False,
        rules=[
            ApprovalRule(tool="refund*", when="args.amount > 100"),
            ApprovalRule(tool="http_request", methods=["GET"], hosts=["*.bank.example"]),
        ],
    )
    assert approval_rule(policy, "refund_payment", {"amount": 500}) is not None
    assert approval_rule(policy, "refund_payment", {"amount": 5}) is None
    assert approval_rule(policy, "calculator", {"amount": 500}) is None
    read = {"url": "https://api.bank.example/balance", "method": "GET"}
    assert approval_rule(policy, "http_request", read) == (
        "rule(tool=http_request methods=GET hosts=*.bank.example)"
    )
    assert approval_rule(policy, "http_request", {**read, "url": "https://x.example"}) is None


def test_a_rule_whose_expression_cannot_be_evaluated_holds_the_call() -> None:
    policy = ApprovalPolicy(rules=[ApprovalRule(when="args.amount > 100")])
    assert approval_rule(policy, "refund", {}) is not None  # fail closed, never open


def test_a_tool_that_always_needs_approval() -> None:
    assert (
        approval_rule(None, "wire", {}, tool_requires_approval=True)
        == "tool wire requires approval"
    )


def test_an_agent_with_a_bad_rule_is_refused_naming_the_field() -> None:
    agent = {
        "name": "ops",
        "system_prompt": "x",
        "model": "local:m",
        "approval": {"rules": [{"when": "args.amount >"}], "on_timeout": "fail"},
    }
    with pytest.raises(AgentValidationError) as caught:
        parse_agent(agent)
    assert "approval.rules[0].when" in str(caught.value.to_dict())
    agent["approval"] = {"rules": [{"tool": "refund", "when": "args.amount > 100"}]}
    assert parse_agent(agent).approval is not None


# -- a workflow task's own rules ---------------------------------------------------------


def _workflow(approval: object) -> dict[str, object]:
    return {
        "name": "refunds",
        "tasks": [
            {"id": "look", "tool": "transform", "with": {}},
            {"id": "pay", "agent": "payer", "prompt": "pay", "approval": approval},
        ],
    }


@pytest.mark.parametrize(
    ("approval", "field"),
    [
        ({"rules": [{"when": "args.amount >"}]}, "tasks[1].approval.rules[0].when"),
        ({"rules": [{"tool": "x", "verb": "DELETE"}]}, "tasks[1].approval.rules[0].verb"),
        ({"timeout_s": 0}, "tasks[1].approval.timeout_s"),
        ({"on_timeout": "explode"}, "tasks[1].approval.on_timeout"),
        # A task cannot relax its agent's policy: no allow_hosts, no http_writes switch.
        ({"allow_hosts": ["*"]}, "tasks[1].approval.allow_hosts"),
        ({"http_writes": False}, "tasks[1].approval.http_writes"),
    ],
)
def test_a_workflow_task_with_a_bad_approval_is_refused_naming_the_field(
    approval: object, field: str
) -> None:
    with pytest.raises(SpecValidationError) as caught:
        parse_spec(_workflow(approval))
    assert field in [e.field for e in caught.value.errors]


def test_a_task_s_rules_join_its_agent_s() -> None:
    spec = parse_spec(
        _workflow({"rules": [{"tool": "refund", "when": "args.amount > 100"}], "timeout_s": 60})
    )
    task_rules = spec.task("pay").approval
    assert task_rules is not None
    agent = ApprovalPolicy(rules=[ApprovalRule(tool="wire")], allow_hosts=["shop.example"])
    merged = merge_approval(agent, task_rules)
    assert merged is not None
    assert approval_rule(merged, "refund", {"amount": 500}) == (
        "rule(tool=refund when=args.amount > 100)"
    )
    assert approval_rule(merged, "refund", {"amount": 5}) is None
    assert approval_rule(merged, "wire", {}) == "rule(tool=wire)"  # the agent's still hold
    assert approval_rule(merged, "http_request", DELETE) is None  # its allowlist stays
    assert (merged.timeout_s, merged.on_timeout) == (60, "reject")
    # A tool task (no agent): the default rule for writes stays on, the worker's timeout.
    alone = merge_approval(None, task_rules, timeout_s=99)
    assert alone is not None
    assert approval_rule(alone, "http_request", DELETE) is not None
    assert alone.timeout_s == 60
    assert merge_approval(agent, None) is agent
    assert merge_approval(None, TaskApproval(), timeout_s=99).timeout_s == 99  # type: ignore[union-attr]
    assert spec.to_dict()["tasks"][1]["approval"]["rules"][0]["tool"] == "refund"
