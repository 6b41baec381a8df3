"""Static analysis of the Jinja2 templates and expressions in a spec.

Templates are rendered at run time by Jinja2's sandbox (`sandbox_environment`). Here they are only
parsed: syntax errors, unknown variables, filters and tests, unsafe attribute access, and every
reference to `inputs.*` and `nodes.<id>.*` are found before anything runs.

Most templates are text with `{{ a.b.c }}` holes, simple conditions and `{% if %}` blocks. Those
take a fast path (`template_fastpath`) instead of Jinja's lexer and parser, which matters for
1,000-node specs; anything else, and anything with a problem to report, goes to Jinja. The two
paths are tested to agree.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2 import nodes as jnodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agentflow_grpc.spec import template_fastpath
from agentflow_grpc.spec.codes import ViolationCode
from agentflow_grpc.spec.nodes import TemplateKind

ROOTS = frozenset({"inputs", "nodes"})
"""The only variables a template sees."""


@functools.cache
def sandbox_environment() -> ImmutableSandboxedEnvironment:
    """The one Jinja2 environment used to parse (here) and render (at run time) spec templates."""
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


@dataclass(frozen=True, slots=True)
class Reference:
    """`inputs.topic` is Reference("inputs", ("topic",)); `nodes.a.output.text` is
    Reference("nodes", ("a", "output", "text")). `dynamic` marks a computed subscript
    (`nodes[name]`) after the static part, which cannot be checked before run time."""

    root: str
    path: tuple[str, ...]
    dynamic: bool = False


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    code: ViolationCode
    message: str


@dataclass(frozen=True, slots=True)
class TemplateAnalysis:
    references: tuple[Reference, ...]
    problems: tuple[TemplateProblem, ...]


@functools.cache
def _fast_path_names() -> template_fastpath.Names:
    environment = sandbox_environment()
    return template_fastpath.Names(
        roots=ROOTS,
        globals=frozenset(environment.globals),
        filters=frozenset(environment.filters),
        tests=frozenset(environment.tests),
    )


@functools.lru_cache(maxsize=16384)
def analyze(text: str, kind: TemplateKind) -> TemplateAnalysis:
    """Parse one template or expression and report its references and problems."""
    found = template_fastpath.references(text, kind, _fast_path_names())
    if found is None:
        return analyze_with_jinja(text, kind)
    return TemplateAnalysis(tuple(Reference(root, path) for root, path in found), ())


def analyze_with_jinja(text: str, kind: TemplateKind) -> TemplateAnalysis:
    """The general path: Jinja2's own parser, then a walk over its syntax tree."""
    environment = sandbox_environment()
    try:
        return _analyze_tree(environment, _parse(environment, text, kind))
    except RecursionError:
        problem = TemplateProblem(
            ViolationCode.TEMPLATE_SYNTAX_ERROR, "nested too deeply to analyse; simplify it"
        )
        return TemplateAnalysis((), (problem,))
    except TemplateSyntaxError as exc:
        where = f"line {exc.lineno}: " if kind == "template" else ""
        return TemplateAnalysis(
            (),
            (TemplateProblem(ViolationCode.TEMPLATE_SYNTAX_ERROR, f"{where}{exc.message}"),),
        )


def _analyze_tree(
    environment: ImmutableSandboxedEnvironment, tree: jnodes.Template
) -> TemplateAnalysis:
    walker = _ReferenceWalker(environment)
    walker.visit(tree)
    known = ROOTS | environment.globals.keys()
    undeclared: set[str] = set()
    if not walker.loaded_names <= known:
        # Some name is neither a root nor a global: ask Jinja's scope tracking (costly, so only
        # here) whether it is a local (`for x in`, `set y =`) or unknown.
        undeclared = _undeclared_variables(environment, tree, walker)
    problems = [_unknown_variable(name) for name in sorted(undeclared - known)]
    problems.extend(walker.problems)
    return TemplateAnalysis(tuple(walker.references), tuple(problems))


def _stand_in(value: object, *args: object, **kwargs: object) -> bool:
    return bool(value)


def _undeclared_variables(
    environment: ImmutableSandboxedEnvironment, tree: jnodes.Template, walker: _ReferenceWalker
) -> set[str]:
    """Names a template reads that neither it (`for`, `set`) nor the environment defines."""
    if walker.unknown_filters or walker.unknown_tests:
        # Jinja's scope tracking runs its compiler, which stops at an unknown filter or test
        # (already reported): track with stand-ins for them.
        environment = environment.overlay()
        environment.filters = {
            **environment.filters,
            **dict.fromkeys(walker.unknown_filters, _stand_in),
        }
        environment.tests = {**environment.tests, **dict.fromkeys(walker.unknown_tests, _stand_in)}
        tree.set_environment(environment)
    try:
        return meta.find_undeclared_variables(tree)
    except Exception:
        # The compiler can also fail while constant-folding (`none.x or a` raises
        # UndefinedError): fall back to the names read but never assigned.
        return walker.loaded_names - walker.stored_names - {"loop"}


def _parse(
    environment: ImmutableSandboxedEnvironment, text: str, kind: TemplateKind
) -> jnodes.Template:
    if kind == "template":
        return environment.parse(text)
    # The same steps as Environment.compile_expression, stopping at the syntax tree.
    parser = Parser(environment, text, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError(
            f"unexpected {parser.stream.current.value!r} after the expression", 1, None, None
        )
    tree = jnodes.Template([jnodes.Output([expression], lineno=1)], lineno=1)
    tree.set_environment(environment)
    return tree


def _unknown_variable(name: str) -> TemplateProblem:
    return TemplateProblem(
        ViolationCode.TEMPLATE_UNKNOWN_VARIABLE,
        f"unknown variable '{name}'; templates see only `inputs` and `nodes`, "
        f"e.g. `inputs.{name}` or `nodes.{name}.output`",
    )


class _ReferenceWalker:
    def __init__(self, environment: ImmutableSandboxedEnvironment) -> None:
        self._environment = environment
        self.references: list[Reference] = []
        self.problems: list[TemplateProblem] = []
        self.loaded_names: set[str] = set()
        self.stored_names: set[str] = set()
        self.unknown_filters: set[str] = set()
        self.unknown_tests: set[str] = set()

    def visit(self, node: jnodes.Node) -> None:
        if isinstance(node, jnodes.Getattr | jnodes.Getitem) and self._visit_chain(node):
            return
        if isinstance(node, jnodes.Name):
            (self.loaded_names if node.ctx == "load" else self.stored_names).add(node.name)
        if isinstance(node, jnodes.Name) and node.ctx == "load" and node.name in ROOTS:
            self.references.append(Reference(node.name, ()))
        elif isinstance(node, jnodes.Filter) and node.name not in self._environment.filters:
            self.unknown_filters.add(node.name)
            self._unknown_filter("filter", node.name, sorted(self._environment.filters))
        elif isinstance(node, jnodes.Test) and node.name not in self._environment.tests:
            self.unknown_tests.add(node.name)
            self._unknown_filter("test", node.name, sorted(self._environment.tests))
        elif isinstance(node, jnodes.Getattr) and node.attr.startswith("_"):
            self._unsafe(node.attr)
        elif (
            isinstance(node, jnodes.Getitem)
            and isinstance(node.arg, jnodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            self._unsafe(node.arg.value)
        for child in node.iter_child_nodes():
            self.visit(child)

    def _visit_chain(self, node: jnodes.Getattr | jnodes.Getitem) -> bool:
        """Record `root.a.b[...]` chains rooted at `inputs` or `nodes`; False for other chains."""
        segments: list[str] = []
        every_key: list[str] = []
        dynamic_args: list[jnodes.Node] = []
        current: jnodes.Node = node
        while isinstance(current, jnodes.Getattr | jnodes.Getitem):
            key = _static_key(current)
            if key is None:
                segments.clear()  # only the part before a computed subscript is static
                dynamic_args.append(current.arg)  # type: ignore[union-attr]
            else:
                segments.append(key)
                every_key.append(key)
            current = current.node
        if not (isinstance(current, jnodes.Name) and current.name in ROOTS):
            return False
        for key in every_key:
            if key.startswith("_"):
                self._unsafe(key)
        reference = Reference(current.name, tuple(reversed(segments)), bool(dynamic_args))
        self.references.append(reference)
        for argument in dynamic_args:
            self.visit(argument)
        return True

    def _unknown_filter(self, what: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = (
            f"did you mean '{close[0]}'?" if close else f"Jinja2's built-in {what}s are available"
        )
        self.problems.append(
            TemplateProblem(
                ViolationCode.TEMPLATE_UNKNOWN_FILTER, f"unknown {what} '{name}'; {hint}"
            )
        )

    def _unsafe(self, attribute: str) -> None:
        self.problems.append(
            TemplateProblem(
                ViolationCode.TEMPLATE_UNSAFE_ATTRIBUTE,
                f"attribute '{attribute}' starts with '_'; the sandbox refuses private attributes",
            )
        )


def _static_key(node: jnodes.Getattr | jnodes.Getitem) -> str | None:
    if isinstance(node, jnodes.Getattr):
        return node.attr
    argument = node.arg
    if isinstance(argument, jnodes.Const) and isinstance(argument.value, str | int):
        return str(argument.value)
    return None
