"""``recdock-central``: the server (``central.app.main``) and its two administrative commands.

``recdock-central enrol ...`` and ``recdock-central rebaseline ...`` run
:mod:`central.admin`; anything else starts the server with its options, as before.
"""

from __future__ import annotations

import sys

ADMIN_COMMANDS = ("enrol", "rebaseline")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ADMIN_COMMANDS:
        from central.admin import admin

        admin.main(args, prog_name="recdock-central")
    else:
        from central.app import main as serve

        serve.main(args, prog_name="recdock-central")


if __name__ == "__main__":
    main()
