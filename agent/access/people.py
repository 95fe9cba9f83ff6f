"""Who runs a command: the person an access request, a decision or an export is recorded under.

The OS user running the command; under sudo (run as root with ``SUDO_USER`` set) the user
behind sudo. ``SUDO_USER`` is believed only from root: anyone else could set it, and root can
act as anyone on the station anyway (docs/security.md). docs/access.md says how a role is known.
"""

from __future__ import annotations

import os
import pwd


def current_user() -> str:
    """The local user name of the person running this command."""
    behind_sudo = os.environ.get("SUDO_USER", "").strip()
    if os.geteuid() == 0 and behind_sudo:
        return behind_sudo
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid-{os.getuid()}"
