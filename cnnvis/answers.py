"""Clear messages, instead of a cascade of NameErrors, in a notebook whose answers are not written yet.

In an untouched notebook the first answer cell raises NotImplementedError, so the names it would
define (`model`, `cam_model`, ...) never exist and every later cell that uses them fails with a
NameError traceback. `explain_missing_names` installs an IPython handler for NameError that, for the
names a notebook declares, says which answer the cell is waiting for. Other NameErrors keep their
usual traceback. The message is an ordinary error output of the cell, never stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping


def waiting_message(name: str, source: str) -> str:
    """What a cell that needs NAME, made by SOURCE, tells the student."""
    return (
        f"`{name}` does not exist yet: it is made by {source}. Write that answer (replace its "
        "`raise NotImplementedError(...)`), run its cell, then run this cell again."
    )


def explain_missing_names(waiting_for: Mapping[str, str]) -> bool:
    """Show waiting_message instead of a traceback when a cell uses a name of WAITING_FOR that is not defined.

    WAITING_FOR maps a variable name to the answer that makes it, e.g. {"model": "build_model (section 2)"}.
    Returns whether a handler was installed (False outside IPython, e.g. in a plain script).
    """
    ipython_module = sys.modules.get("IPython")
    shell = ipython_module.get_ipython() if ipython_module is not None else None
    if shell is None:
        return False
    waiting_for = dict(waiting_for)

    def handler(shell, etype, value, tb, tb_offset=None):
        name = getattr(value, "name", None)
        if name not in waiting_for:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return None
        lines = [f"{etype.__name__}: {waiting_message(name, waiting_for[name])}"]
        shell._showtraceback(etype, value, lines)
        return lines

    shell.set_custom_exc((NameError,), handler)
    return True
