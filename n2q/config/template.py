"""``[NAME@FILE.ini.tpl]`` template sections (spec/ini.md, Templates).

To be completed: N2D2's template syntax ({{VAR}}, if/else/endif with ==, !=, exists,
not_exists, for ... in range(a, b), set ... endset, block, include).
"""

from __future__ import annotations

from n2q.errors import UserError


def is_template_header(name: str) -> bool:
    return "@" in name


def expand_template(config, builder, name, bases, file, line):
    raise UserError("template sections are not supported yet", file=file, line=line,
                    section=name)
