"""The template fast path answers exactly as Jinja2 does, or steps aside."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow_grpc.spec.template_fastpath import references
from agentflow_grpc.spec.templates import (
    TemplateAnalysis,
    _fast_path_names,
    analyze,
    analyze_with_jinja,
)


def fast(text: str, kind: str = "template") -> list[tuple[str, tuple[str, ...]]] | None:
    return references(text, kind, _fast_path_names())


def test_recognises_holes_conditions_and_if_blocks() -> None:
    text = (
        "Hello {{ inputs.name }}! "
        "{% if nodes.a is defined and nodes.a.output.score > 0.5 %}{{ nodes.a.output.text }}"
        "{% elif not (inputs.mode == 'x' or inputs.mode in inputs.modes) %}{{ inputs.q | upper }}"
        "{% else %}none{% endif %}"
    )
    assert fast(text) == [
        ("inputs", ("name",)),
        ("nodes", ("a",)),
        ("nodes", ("a", "output", "score")),
        ("nodes", ("a", "output", "text")),
        ("inputs", ("mode",)),
        ("inputs", ("mode",)),
        ("inputs", ("modes",)),
        ("inputs", ("q",)),
    ]


def test_recognises_expressions() -> None:
    assert fast("nodes.c.output.category != 'billing' and inputs.n >= 3", "expression") == [
        ("nodes", ("c", "output", "category")),
        ("inputs", ("n",)),
    ]
    assert fast("inputs.x is not none", "expression") == [("inputs", ("x",))]
    assert fast("inputs | length > 2", "expression") == [("inputs", ())]


def test_steps_aside_for_anything_else() -> None:
    for text in [
        "{{ unknown.name }}",  # a problem: Jinja2 words the message
        "{{ inputs.x | bogus }}",
        "{{ inputs._private }}",
        "{{ inputs.x | default('a') }}",  # filter arguments
        "{{ nodes[inputs.k].output }}",
        "{{- inputs.x -}}",
        "{% for x in inputs.items %}{{ x }}{% endfor %}",
        "{% if inputs.a %}unclosed",
        "{% else %}",
        "{{ inputs.a if inputs.b else inputs.c }}",
        "{{ 'it''s' }}",
        "{{ 'a\\'b' }}",
        "{{ 1_000 }}",
        "{{ inputs.x is divisibleby 3 }}",
        "{# comment #}",
        "{{ }}",
        "{{{ inputs.x }}}",
        "{{ range(3) }}",
        "{{ true.x }}",
    ]:
        assert fast(text) is None, text


def test_text_without_markup_has_no_references() -> None:
    assert fast("plain text with } and %} and }}") == []


FRAGMENTS = [
    "text ", " ", "\n", "{", "}", "{{", "}}", "{%", "%}", "{#", "#}", "{{{", "}}}", "'", '"',
    "inputs", "nodes", "inputs.a", "nodes.a.output", "nodes.b.output.text", "a", "x.y",
    "true", "none", "True", "range", "loop", ".", "..", "0", "1.5", "2.", "'s'", '"d"',
    "==", "!=", "<", ">=", "and", "or", "not", "in", "is", "defined", "none", "bogus",
    "|", "upper", "tojson", "(", ")", "[", "]", "_x", "-", "if", "elif", "else", "endif",
    "for", "set", "=",
]  # fmt: skip


@st.composite
def template_texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(FRAGMENTS), max_size=14))
    return "".join(draw(st.sampled_from(["", " "])) + part for part in parts)


@st.composite
def structured_templates(draw: st.DrawFn) -> str:
    """Mostly well-formed templates, so that the fast path is exercised, not just refused."""
    operand = st.sampled_from(
        ["inputs.a", "nodes.n.output.x", "inputs", "'s'", "3", "0.5", "none", "true", "zz"]
    )
    suffix = st.sampled_from(["", " | upper", " | tojson", " is defined", " is not none", " | no"])
    op = st.sampled_from([" == ", " != ", " > ", " in ", " not in ", " and ", " or "])

    def expression() -> str:
        left = draw(operand) + draw(suffix)
        if draw(st.booleans()):
            left = f"{left}{draw(op)}{draw(operand)}{draw(suffix)}"
        if draw(st.booleans()):
            left = f"not ({left})"
        return left

    pieces = []
    for _ in range(draw(st.integers(0, 4))):
        choice = draw(st.sampled_from(["text", "hole", "if", "ifelse", "broken"]))
        if choice == "text":
            pieces.append(draw(st.sampled_from(["Hi ", "\n", "} ", "50% "])))
        elif choice == "hole":
            pieces.append("{{ " + expression() + " }}")
        elif choice == "if":
            pieces.append("{% if " + expression() + " %}x{% endif %}")
        elif choice == "ifelse":
            first, second = expression(), expression()
            pieces.append(f"{{% if {first} %}}a{{% elif {second} %}}b{{% else %}}c{{% endif %}}")
        else:
            pieces.append(draw(st.sampled_from(["{% endif %}", "{% else %}", "{{ ", "{% if x"])))
    return "".join(pieces)


def _both(text: str, kind: str) -> tuple[TemplateAnalysis, TemplateAnalysis]:
    return analyze.__wrapped__(text, kind), analyze_with_jinja(text, kind)  # type: ignore[attr-defined]


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(st.one_of(template_texts(), structured_templates()))
def test_fast_path_agrees_with_jinja_on_templates(text: str) -> None:
    quick, full = _both(text, "template")
    assert quick == full


@settings(max_examples=400, deadline=None)
@given(template_texts())
def test_fast_path_agrees_with_jinja_on_expressions(text: str) -> None:
    quick, full = _both(text, "expression")
    assert quick == full


def test_the_structured_strategy_reaches_the_fast_path() -> None:
    sample = "{% if inputs.a | upper == 'S' %}x{% endif %}{{ nodes.n.output.x is defined }}"
    assert fast(sample) == [("inputs", ("a",)), ("nodes", ("n", "output", "x"))]
