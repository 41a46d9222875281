"""Write rollcap(8): python3 debian/manpage.py VERSION > rollcap.8 (debian/rules runs it,
with the installed tree on PYTHONPATH). The page's source: rollcap/manpage.py."""

from __future__ import annotations

import sys

from rollcap.manpage import render

if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1] if len(sys.argv) > 1 else "unknown"))
