"""Which tool calls need approval: the default rule for http_request writes, the agent's
rules (tool, method, host, sandboxed expression) and tools that always need it."""

from __future__ import annotations

import pytest
from cadenza_workflow import ApprovalPolicy, ApprovalRule, approval_rule, parse_agent
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
