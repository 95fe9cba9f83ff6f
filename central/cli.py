"""``recdock-central``: the server (``central.command.main``) and its administrative commands.

``recdock-central enrol ...``, ``rebaseline ...``, ``keygen ...`` and ``register ...`` run
:mod:`central.admin`, ``recdock-central user ...`` the dashboard's users
(:mod:`central.web.cli`), ``recdock-central export ...`` the centre's export of an approved
access request (:mod:`central.access_cli`);
anything else starts the server with its options, as before.
"""

from __future__ import annotations

import sys

ADMIN_COMMANDS = ("enrol", "rebaseline", "keygen", "register")
USER_COMMAND = "user"  # the dashboard's users: central/web/cli.py
EXPORT_COMMAND = "export"  # approved access: central/access_cli.py


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == USER_COMMAND:
        from central.web.cli import user

        user.main(args[1:], prog_name="recdock-central user")
    elif args and args[0] == EXPORT_COMMAND:
        from central.access_cli import export

        export.main(args[1:], prog_name="recdock-central export")
    elif args and args[0] in ADMIN_COMMANDS:
        from central.admin import admin

        admin.main(args, prog_name="recdock-central")
    else:
        from central.command import main as serve

        serve.main(args, prog_name="recdock-central")


if __name__ == "__main__":
    main()
