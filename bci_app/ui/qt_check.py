"""Can Qt open a window here? Checked in a subprocess, without importing Qt in this one.

When Qt cannot load its platform plugin (typically ``xcb`` without ``libxcb-cursor0``) it
prints its own message and aborts the process, which no ``try`` can catch. So
:func:`check_qt_platform` starts a child that makes a ``QApplication``, and when that fails
it names the missing system libraries (``ldd`` on the platform plugin and Qt's XCB
library) with the Debian/Ubuntu package that usually provides each.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_CHILD = (
    "import sys\n"
    "from PySide6.QtWidgets import QApplication\n"
    "app = QApplication(sys.argv[:1])\n"
    "print('platform=' + app.platformName(), flush=True)\n"
)


@dataclass
class QtPlatformCheck:
    """Outcome of :func:`check_qt_platform`."""

    ok: bool
    platform: str = ""
    missing: list[str] = field(default_factory=list)  # sonames ldd could not find
    detail: str = ""  # the last lines Qt printed

    @property
    def packages(self) -> list[str]:
        return [package_for(so) for so in self.missing]

    def message(self) -> str:
        """One paragraph saying what is wrong and what to install."""
        if self.ok:
            return f"Qt platform plugin {self.platform!r} loads"
        if self.missing:
            return (
                f"Qt cannot load its platform plugin {self.platform or 'xcb'!r}: missing system "
                f"libraries {', '.join(self.missing)}; install them, e.g. on Debian/Ubuntu "
                f"`apt-get install {' '.join(self.packages)}`"
            )
        return f"Qt cannot open a window: {self.detail or 'the Qt check failed'}"


def package_for(soname: str) -> str:
    """The Debian package that usually ships ``soname`` (``libxcb-cursor.so.0`` -> ``libxcb-cursor0``)."""
    m = re.match(r"^(lib[\w+.-]*?)\.so\.(\d+)", soname)
    if not m:
        return soname
    base, major = m.groups()
    return f"{base}-{major}" if base[-1].isdigit() else f"{base}{major}"


def _platform_name(env: dict[str, str]) -> str:
    name = env.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0]
    if name:
        return name
    if sys.platform.startswith("linux"):
        return "wayland" if env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY") else "xcb"
    return ""


def missing_libraries(platform: str = "xcb") -> list[str]:
    """Sonames the platform plugin needs that the dynamic linker cannot find (Linux)."""
    if not sys.platform.startswith("linux") or shutil.which("ldd") is None:
        return []
    try:
        import importlib.util

        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return []
    if spec is None or spec.origin is None:
        return []
    qt = Path(spec.origin).parent / "Qt"
    files = [qt / "plugins" / "platforms" / f"libq{platform}.so"]
    if platform == "xcb":
        files.append(qt / "lib" / "libQt6XcbQpa.so.6")
    missing: list[str] = []
    for f in files:
        if not f.exists():
            continue
        out = subprocess.run(["ldd", str(f)], capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines():
            if "not found" in line:
                so = line.split("=>")[0].strip()
                if so not in missing:
                    missing.append(so)
    return missing


def check_qt_platform(timeout: float = 30.0, env: dict[str, str] | None = None) -> QtPlatformCheck:
    """Make a QApplication in a child process; say why it failed when it does."""
    env = dict(os.environ if env is None else env)
    platform = _platform_name(env)
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return QtPlatformCheck(False, platform, [], f"making a QApplication took over {timeout:g} s")
    m = re.search(r"platform=(\S+)", proc.stdout)
    if proc.returncode == 0 and m:
        return QtPlatformCheck(True, m.group(1))
    lines = [s for s in (proc.stderr or "").strip().splitlines() if s.strip()]
    detail = " ".join(lines[-3:])[:600] or f"exit status {proc.returncode}"
    return QtPlatformCheck(False, platform, missing_libraries(platform or "xcb"), detail)
