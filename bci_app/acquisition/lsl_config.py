"""liblsl's own settings: a lower log level, unless the lab has an ``lsl_api.cfg``.

liblsl logs its start-up at INFO level to stderr ("Loaded default config", its git
hash and build) in every process that opens a stream. It reads its settings from the
file named by ``$LSLAPICFG``, else ``./lsl_api.cfg``, ``~/lsl_api/lsl_api.cfg``,
``/etc/lsl_api/lsl_api.cfg``; a lab that has one (e.g. for ``KnownPeers`` across
subnets) keeps it untouched. Without one, :func:`quiet_liblsl` gives liblsl the content
``[log] level = N`` (liblsl >= 1.16, ``lsl_set_config_content``) before its first use.
Levels: -2 errors, -1 warnings, 0 info (liblsl's default), 1-9 more detail.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

QUIET_LEVEL = -1  # warnings and errors (a broken-off stream, a failed bind) stay visible


def user_lsl_config() -> Path | None:
    """The ``lsl_api.cfg`` liblsl would read, or None when there is none."""
    env = os.environ.get("LSLAPICFG")
    if env:
        return Path(env)
    for path in (Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg",
                 Path("/etc/lsl_api/lsl_api.cfg")):
        if path.is_file():
            return path
    return None


def quiet_liblsl(level: int = QUIET_LEVEL) -> bool:
    """Set liblsl's log level to ``level`` when the user has no liblsl config file.

    Call before the process's first stream, resolve or outlet (liblsl reads its settings
    once). Returns True when the level was set; False when a config file decides, pylsl
    or liblsl is missing, or liblsl is too old to take settings as content.
    """
    if not -3 <= int(level) <= 9:
        raise ValueError(f"liblsl log level must be in -3..9 (-2 errors, -1 warnings, 0 info), got {level}")
    if user_lsl_config() is not None:
        return False
    try:
        import pylsl

        fn = pylsl.lib.lib.lsl_set_config_content
    except (ImportError, RuntimeError, OSError, AttributeError) as err:
        log.debug("liblsl log level left as it is: %s", err)
        return False
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = None
    fn(f"[log]\nlevel = {int(level)}\n".encode())
    return True
