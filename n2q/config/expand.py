"""Resolution of a raw value when it is read: ``${VAR}``, ``[Section]Key`` and ``$(expr)``.

Order (spec/ini.md): variables first, then references (recursively resolved), then the
``$(...)`` expressions, innermost first, so that ``$([sp]_EpochSize * 40)`` works.
"""

from __future__ import annotations

import ast
import math
import operator
import os
import re
from typing import TYPE_CHECKING

from n2q.errors import UserError
from n2q.errors import did_you_mean as _did_you_mean

if TYPE_CHECKING:
    from n2q.config.model import Config, Entry, Section

# ${NAME} (INI variables and environment variables) and $NAME (environment variables only,
# in path-like values; N2D2's INI variables are always written with braces).
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_INI_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# [Section]Key: the key name ends at the next blank (or an operator / closing parenthesis when
# inside an expression, e.g. $([sp]_EpochSize*40)); it may contain dots
# ([sp.StimuliData-x]_GlobalValue.mean).
_REF = re.compile(r"\[([^\[\]\s]+)\]([A-Za-z_][A-Za-z0-9_.]*[A-Za-z0-9_]|[A-Za-z_])")
_ENV_ALIASES = {"N2D2_DATA": "N2Q_DATA", "N2D2_MODELS": "N2Q_MODELS",
                "N2Q_DATA": "N2D2_DATA", "N2Q_MODELS": "N2D2_MODELS"}
_MAX_DEPTH = 32


def env_lookup(name: str) -> str | None:
    """An environment variable, with N2D2's spellings as aliases of n2q's."""
    if name in os.environ:
        return os.environ[name]
    alias = _ENV_ALIASES.get(name)
    return os.environ.get(alias) if alias else None


def expand_env(text: str) -> str:
    """Expand ``$NAME`` / ``${NAME}`` from the environment (path-like values); unknown kept."""
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        value = env_lookup(name)
        return value if value is not None else m.group(0)

    return _ENV_VAR.sub(sub, text)


def unresolved_variables(text: str, braced_only: bool = False) -> list[str]:
    """Names of the ``${NAME}`` (and, unless ``braced_only``, ``$NAME``) left in ``text``."""
    if braced_only:
        return _INI_VAR.findall(text)
    return [a or b for a, b in _ENV_VAR.findall(text)]


def undefined_variable_error(name: str, section: Section) -> UserError:
    """The message for a ``${NAME}`` that nothing defines, with a close variable name if any."""
    known = set(section.variables) | set(section.config.globals.variables)
    hint = _did_you_mean(name, sorted(known)).replace(" (did you mean ", " (did you mean $")
    where = "in this section or " if section.name else ""
    export = ""
    if name in _ENV_ALIASES or name == "HOME":
        export = f", or export {_ENV_ALIASES.get(name, name) if name.startswith('N2D2') else name}"
    return UserError(f"undefined variable ${{{name}}}{hint}: define ${name}=... {where}in the "
                     f"global section (before the first [section]){export}")


def _variable(config: Config, section: Section, name: str) -> str | None:
    if name == "SECTION_NAME":
        return section.name
    if name == "PREV_SECTION_NAME":
        prev = config.previous_section(section)
        return prev.name if prev else ""
    for scope in (section, config.globals):
        if name in scope.variables:
            return scope.variables[name].value
    return None


def substitute_variables(config: Config, section: Section, text: str, depth: int = 0) -> str:
    """``${NAME}``: section variable, then global one, then built-ins; unknown left as is."""
    if "${" not in text:
        return text

    def sub(m: re.Match) -> str:
        name = m.group(1)
        value = _variable(config, section, name)
        if value is None:
            return m.group(0)  # unknown: left as is (maybe an env var, expanded for paths)
        if depth > _MAX_DEPTH:
            raise UserError(f"variable ${{{name}}} refers to itself", section=section.name)
        return substitute_variables(config, section, value, depth + 1)

    return _INI_VAR.sub(sub, text)


def _missing_section(m: re.Match, section: Section, key: str, whole: bool) -> str:
    """``[X]Key`` where X is no section: left as is (spec), except where it is obviously a
    reference: the whole value, a generator-set key (``_EpochSize``...) or ``[sp]``."""
    sec_name, ref_key = m.group(1), m.group(2)
    if whole or sec_name == "sp" or ref_key.startswith("_"):
        raise UserError(f"refers to [{sec_name}]{ref_key} but there is no [{sec_name}] "
                        f"section: add a [{sec_name}] section (with {ref_key}=...) or write "
                        "the value itself", section=section.name, key=key)
    return m.group(0)


def _reference(config: Config, m: re.Match, section: Section, key: str, depth: int,
               whole: bool) -> str:
    sec_name, ref_key = m.group(1), m.group(2)
    generated = config.generated.get((sec_name, ref_key))
    if generated is None and sec_name == "env":  # N2D2's Environment is a stimuli provider
        generated = config.generated.get(("sp", ref_key))
    if generated is not None:
        return _format(generated)
    target = config.get(sec_name)
    if target is None and sec_name in ("sp", "env"):  # the provider, whichever name it has
        target = config.get("env" if sec_name == "sp" else "sp")
    if target is None:
        return _missing_section(m, section, key, whole)
    if ref_key.startswith("_"):
        raise UserError(f"[{sec_name}]{ref_key} is not known yet: it is set when "
                        f"[{sec_name}] is built, which must come first", section=section.name,
                        key=key)
    entry = target.entry(ref_key)
    if entry is None:
        hint = _did_you_mean(ref_key, target.keys())
        raise UserError(f"refers to [{sec_name}]{ref_key}, which is not set{hint}: add "
                        f"{ref_key}=... to [{sec_name}]", section=section.name, key=key)
    target.used = True
    return resolve_value(config, entry.value, target, ref_key, entry, depth + 1)


def _format(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


def resolve_value(config: Config, text: str, section: Section, key: str,
                  entry: Entry | None = None, depth: int = 0) -> str:
    """Fully resolve a raw value; errors are located at the entry's line.

    Order: ``${VAR}``, then ``[Section]Key`` (each resolved recursively in its own section),
    then ``$(expr)`` innermost first, so that ``$([sp]_EpochSize * ${EPOCHS})`` works."""
    try:
        if depth > _MAX_DEPTH:
            raise UserError("references form a loop", section=section.name, key=key)
        text = substitute_variables(config, section, text)
        if "[" in text:
            whole = _REF.fullmatch(text.strip()) is not None
            text = _REF.sub(lambda m: _reference(config, m, section, key, depth, whole), text)
        if "$(" in text:
            text = evaluate_expressions(text, section)
        return text
    except UserError as err:
        if entry is not None and err.file is None:
            err.file, err.line = entry.file, entry.line
            err.section = err.section if err.section is not None else section.name
            err.key = err.key or key
        raise


# -- $(expr) ---------------------------------------------------------------------------------
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCS = {"int": int, "float": float, "round": round, "min": min, "max": max, "abs": abs}


class _Refused(Exception):
    """An expression the safe evaluator does not compute (the caller names the value)."""


def _check_size(op: ast.operator, left: object, right: object) -> None:
    """Refuse results too large to be a model setting (``9**9**9``, ``'a' * 10**9``)."""
    if isinstance(op, ast.Pow) and isinstance(right, (int, float)) and not isinstance(
            right, bool) and isinstance(left, (int, float)):
        magnitude = abs(left) if abs(left) > 1 else 1
        if abs(right) * math.log2(magnitude + 1) > 4096:
            raise _Refused("result too large")
    if isinstance(op, ast.Mult) and (isinstance(left, str) or isinstance(right, str)):
        count = right if isinstance(left, str) else left
        if isinstance(count, int) and count > 10000:
            raise _Refused("result too large")


def _eval(node: ast.AST) -> object:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        _check_size(node.op, left, right)
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BoolOp):
        values = [_eval(v) for v in node.values]
        result = values[0]
        for v in values[1:]:
            result = (result and v) if isinstance(node.op, ast.And) else (result or v)
        return result
    if isinstance(node, ast.Compare):
        left = _eval(node.left)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _CMP:
                raise _Refused(type(op).__name__)
            right = _eval(comp)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body) if _eval(node.test) else _eval(node.orelse)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS and not node.keywords):
        return _FUNCS[node.func.id](*[_eval(a) for a in node.args])
    raise _Refused(ast.dump(node)[:40] if not isinstance(node, ast.Name) else node.id)


def evaluate(expr: str) -> str:
    """Evaluate one ``$(...)`` body with the whitelist of spec/ini.md; anything else refused."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
        value = _eval(tree)
    except (_Refused, SyntaxError, TypeError, ValueError, ZeroDivisionError,
            OverflowError) as exc:
        why = ("only numbers, + - * / // % **, comparisons, and/or/not, 'a if c else b' and "
               "int float round min max abs are allowed")
        if isinstance(exc, ZeroDivisionError):
            why = "division by zero"
        elif isinstance(exc, _Refused) and str(exc) == "result too large":
            why = "the result is too large"
        elif _REF.search(expr):
            ref = _REF.search(expr)
            why = f"{ref.group(0)} refers to no section (there is no [{ref.group(1)}])"
        elif isinstance(exc, SyntaxError):
            why = "not a valid expression"
        raise UserError(f"cannot evaluate $({expr}): {why}") from None
    if isinstance(value, bool):
        return "1" if value else "0"
    return _format(value)


def evaluate_expressions(text: str, section: Section | None = None) -> str:
    """Replace every ``$(...)`` (parentheses may nest) by its value, innermost first.

    A ``${NAME}`` still in an expression is an undefined variable (VGG16.ini's trap): say so
    rather than "invalid syntax"."""
    while True:
        start = text.rfind("$(")
        if start < 0:
            return text
        depth, i = 0, start + 1
        while i < len(text):
            if text[i] == "(":
                depth += 1
            elif text[i] == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        else:
            raise UserError(f"unbalanced parentheses in {text[start:]}: close the $( with )")
        body = text[start + 2:i]
        names = unresolved_variables(body, braced_only=True)
        if names:
            raise (undefined_variable_error(names[0], section) if section is not None
                   else UserError(f"undefined variable ${{{names[0]}}} in $({body})"))
        text = text[:start] + evaluate(body) + text[i + 1:]
