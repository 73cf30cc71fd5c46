"""The environment of steps and processes, and ``${NAME}`` expansion.

A value is data, never code. In a value, a ``cwd:`` or a typed kind's option, ``${NAME}``
is replaced by the text of the value. In a shell ``run:`` (and a ``cmd:`` ready check),
which ``sh -c`` parses, pasting the text would let a value like ``main$(touch pwned)``
run, so there ``${NAME}`` becomes a reference the shell resolves from the environment
devenv passes it (``"${NAME}"``, quoted for where it stands): the shell never parses a
value, and the value stays out of the command line (``ps``, logs).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from devenv.errors import ConfigError
from devenv.schema import Command, Location

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UndefinedVariable(ConfigError):
    """``${NAME}`` names a variable that nothing defines."""


def references(text: str) -> list[str]:
    """The variable names ``text`` refers to without a default (``${X:-d}`` excluded)."""
    return [m.group(1) for m in _VAR.finditer(text) if m.group(1) and m.group(2) is None]


def expand(text: str, env: Mapping[str, str], loc: Location | None = None,
           path: str = "") -> str:
    """Replace ``${NAME}`` (and ``${NAME:-default}``) from ``env``; ``$${`` gives ``${``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise _undefined(name, loc, path)

    return _VAR.sub(sub, text)


def names(cmd: Command) -> set[str]:
    """Every variable name ``cmd`` refers to, with a default or not."""
    texts = [cmd] if isinstance(cmd, str) else list(cmd)
    return {m.group(1) for t in texts for m in _VAR.finditer(t) if m.group(1)}


def expand_command(cmd: Command, env: Mapping[str, str], loc: Location | None = None,
                   path: str = "") -> Command:
    """A ``run:`` ready to start in ``env``: a shell string through :func:`shell_command`
    (values stay in the environment); an argv list with each value pasted into its own
    argument (no shell parses it, so the value is data already)."""
    if isinstance(cmd, str):
        return shell_command(cmd, env, loc, path)
    return tuple(expand(a, env, loc, f"{path}[{i}]") for i, a in enumerate(cmd))


def expand_for_reading(cmd: Command, env: Mapping[str, str], loc: Location | None = None,
                       path: str = "") -> Command:
    """The command with the values pasted in, to read what it runs (doctor looks for the
    programs it names). Never run this text: :func:`expand_command` is for running."""
    if isinstance(cmd, str):
        return expand(cmd, env, loc, path)
    return expand_command(cmd, env, loc, path)


# --------------------------------------------------------------------------- shell text

# What a ``${NAME}`` turns into, by where it stands in the shell text:
#   unquoted (also inside $(...) and `...`): "${NAME}" - one word, not split or globbed
#   inside "...", an unquoted here-document or $((...)): ${NAME} - already data there
#   inside '...': '"${NAME}"' - close the quotes, the reference, open them again
#   inside a quoted here-document (<<'EOF'): the value itself, which is not parsed there
_UNQUOTED, _SINGLE, _DOUBLE, _BACKTICK, _SUBST, _ARITH, _COMMENT, _HEREDOC, _RAW_HEREDOC = \
    range(9)
_WORD_END = " \t\n;&|<>()"


@dataclass
class _Ctx:
    kind: int
    depth: int = 0  # open parentheses of $( or $((
    delim: str = ""  # a here-document's end line
    strip: bool = False  # <<- : the end line may be indented with tabs


def shell_command(text: str, env: Mapping[str, str], loc: Location | None = None,
                  path: str = "") -> str:
    """``text`` for ``sh -c`` with each ``${NAME}`` as a reference the shell resolves from
    ``env`` (which the command must be started with): a value is never parsed as shell
    code, and is one word wherever it stands. ``${NAME:-default}`` with ``NAME`` unset
    gives the default as written (it is the author's own text); ``$${`` gives ``${`` for
    the shell to expand itself; an undefined ``${NAME}`` raises ``UndefinedVariable``.

    The scan follows the shell's quoting (quotes, backslashes, ``$(...)``, backticks,
    ``$((...))``, comments, here-documents) only to choose how to write the reference;
    if it misjudged a construct, the worst outcome is a value split into words, never a
    value run as code.
    """
    out: list[str] = []
    stack = [_Ctx(_UNQUOTED)]
    pending: list[_Ctx] = []  # here-documents whose text starts on the next line
    i, n = 0, len(text)

    def reference(m: re.Match[str], kind: int) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name not in env:
            if default is not None:
                return default
            raise _undefined(name, loc, path)
        if kind == _RAW_HEREDOC:
            value = env[name]
            if "\n" in value:
                raise ConfigError(
                    f"${{{name}}} holds a line break and stands in a quoted here-document "
                    f"(<<'END'), where it cannot stay one value; use an unquoted one (<<END)",
                    loc.file if loc else None, loc.line if loc else None, path)
            return value
        if kind in (_DOUBLE, _HEREDOC, _ARITH):
            return f"${{{name}}}"
        if kind == _SINGLE:
            return f"'\"${{{name}}}\"'"
        return f'"${{{name}}}"'

    while i < n:
        top = stack[-1]
        kind = top.kind
        if kind in (_HEREDOC, _RAW_HEREDOC) and (i == 0 or text[i - 1] == "\n"):
            end = text.find("\n", i)
            end = n if end < 0 else end
            line = text[i:end]
            if (line.lstrip("\t") if top.strip else line) == top.delim:
                out.append(text[i:end + 1])
                i = end + 1
                stack.pop()
                continue
        m = _VAR.match(text, i)
        if m:
            out.append(reference(m, kind))
            i = m.end()
            continue
        c = text[i]
        if kind == _SINGLE:
            if c == "'":
                stack.pop()
        elif kind == _COMMENT:
            if c == "\n":
                stack.pop()
                continue  # the line break ends the command too (here-documents start)
        elif kind == _RAW_HEREDOC:
            pass
        elif c == "\\":
            if text.startswith("${", i + 1) and _VAR.match(text, i + 1):
                # devenv expands ${NAME} even after a backslash (it always has); the
                # backslash only escaped the value's first character, which is data now
                i += 1
                continue
            out.append(text[i:i + 2])
            i += 2
            continue
        elif kind in (_DOUBLE, _HEREDOC):
            if c == '"' and kind == _DOUBLE:
                stack.pop()
            elif c == "`":
                stack.append(_Ctx(_BACKTICK))
            elif (opened := _opens(text, i)) is not None:
                stack.append(opened[0])
                out.append(text[i:i + opened[1]])
                i += opened[1]
                continue
        elif kind == _ARITH:
            if c == "(":
                top.depth += 1
            elif c == ")":
                top.depth -= 1
                if top.depth == 0:
                    stack.pop()
        else:  # unquoted: the top level, $(...) or `...`
            if c == "'":
                stack.append(_Ctx(_SINGLE))
            elif c == '"':
                stack.append(_Ctx(_DOUBLE))
            elif c == "`":
                if kind == _BACKTICK:
                    stack.pop()
                else:
                    stack.append(_Ctx(_BACKTICK))
            elif (opened := _opens(text, i)) is not None:
                stack.append(opened[0])
                out.append(text[i:i + opened[1]])
                i += opened[1]
                continue
            elif c == "(" and kind == _SUBST:
                top.depth += 1
            elif c == ")" and kind == _SUBST:
                top.depth -= 1
                if top.depth == 0:
                    stack.pop()
            elif c == "#" and (i == 0 or text[i - 1] in _WORD_END):
                stack.append(_Ctx(_COMMENT))
            elif text.startswith("<<", i) and not text.startswith("<<<", i):
                doc, j = _heredoc(text, i + 2)
                out.append(text[i:j])
                i = j
                if doc is not None:
                    pending.append(doc)
                continue
            elif c == "\n" and pending:
                stack.extend(reversed(pending))
                pending.clear()
        out.append(c)
        i += 1
    return "".join(out)


def _opens(text: str, i: int) -> tuple[_Ctx, int] | None:
    """The context ``$((`` or ``$(`` at ``i`` opens (in double quotes as unquoted) and
    how many characters the opener takes."""
    if text.startswith("$((", i):
        return _Ctx(_ARITH, 2), 3
    if text.startswith("$(", i):
        return _Ctx(_SUBST, 1), 2
    return None


def _heredoc(text: str, j: int) -> tuple[_Ctx | None, int]:
    """The here-document a ``<<`` at ``j - 2`` opens, and where its word ends."""
    strip = text.startswith("-", j)
    j += 1 if strip else 0
    while j < len(text) and text[j] in " \t":
        j += 1
    word: list[str] = []
    quoted = False
    while j < len(text) and text[j] not in _WORD_END:
        c = text[j]
        if c in "'\"":
            quoted = True
            close = text.find(c, j + 1)
            close = len(text) if close < 0 else close
            word.append(text[j + 1:close])
            j = close + 1
        elif c == "\\":
            quoted = True
            word.append(text[j + 1:j + 2])
            j += 2
        else:
            word.append(c)
            j += 1
    if not word:
        return None, j
    return _Ctx(_RAW_HEREDOC if quoted else _HEREDOC, delim="".join(word), strip=strip), j


# --------------------------------------------------------------------------- masking

_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s'\"]*:)[^@/\s'\"]+(@)")
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|API_?KEY|"
                          r"ACCESS_KEY", re.IGNORECASE)
MASK = "***"


def secrets(env: Mapping[str, str]) -> list[str]:
    """The values in ``env`` to keep out of anything shown or written: the database
    password (also as it stands in a URL) and every variable whose name says it is secret
    (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``, ``*API_KEY*``...). Values shorter than
    three characters are left: masking every ``1`` would hide more than it protects."""
    found = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 3}
    found |= {urllib.parse.quote(v, safe="") for v in list(found)}
    return sorted(found, key=len, reverse=True)  # longest first: no half-masked value


def mask(text: str, env: Mapping[str, str] | Iterable[str] = ()) -> str:
    """``text`` (a command line) with every URL's password and the secret values of
    ``env`` (see :func:`secrets`; or the values themselves) replaced by ``***``.

    A value is masked where it stands on its own, not inside a longer word or a path: a
    password ``postgres`` hides ``-U postgres`` and ``PGPASSWORD=postgres`` but leaves
    ``postgresql://`` readable, and a password ``devenv`` leaves ``/repo/devenv/kinds``
    and ``.devenv/logs`` alone (a masked path helps nobody find the file)."""
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<2>", text)
    values = [v for v in (secrets(env) if isinstance(env, Mapping) else env) if v]
    if not values:
        return text
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.sub(rf"(?<![\w./\\-])(?:{alternatives})(?![\w/\\-]|\.\w)", MASK, text)


def _undefined(name: str, loc: Location | None, path: str) -> UndefinedVariable:
    return UndefinedVariable(
        f"${{{name}}} is not defined; set it under env: in steps.yaml or in your shell, "
        f"or write ${{{name}:-default}}",
        loc.file if loc else None, loc.line if loc else None, path)


def layered(base: Mapping[str, str],
            *layers: tuple[Mapping[str, str], Callable[[str], Location | None], str],
            ) -> dict[str, str]:
    """``base`` plus each layer of ``env:`` values, in order: a value may use the values
    before it (``URL: ${BASE}/app``). ``locate(key)`` gives the line for an error."""
    env = dict(base)
    for values, locate, path in layers:
        for k, v in values.items():
            env[k] = expand(v, env, locate(k), f"{path}.{k}")
    return env
