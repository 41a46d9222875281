"""tcpdump's work files stay inside Debian's AppArmor profile for tcpdump.

The profile (/etc/apparmor.d/usr.bin.tcpdump, shipped by the tcpdump package
and enforced by default where AppArmor is on) lets tcpdump write only
*.pcap / *.cap files, optionally followed by the -C/-W number. This machine's
kernel has no AppArmor, so the rules are checked by matching the names the
capture daemon gives tcpdump against the profile's own globs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from rollcap.spool.workname import work_template

PROFILE = Path("/etc/apparmor.d/usr.bin.tcpdump")
WORK = "/var/spool/rollcap/work"


def _glob_to_regex(glob: str) -> re.Pattern[str]:
    """AppArmor path glob -> regex: ** any chars, * any but '/', [..] class, {a,b}."""
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = glob.index("]", i)
            out.append(glob[i : j + 1])
            i = j + 1
            continue
        elif ch == "{":
            j = glob.index("}", i)
            out.append("(?:" + "|".join(re.escape(p) for p in glob[i + 1 : j].split(",")) + ")")
            i = j + 1
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))


def _writable_rules() -> list[re.Pattern[str]]:
    if not PROFILE.is_file():
        pytest.fail(f"{PROFILE} is missing: install Debian's tcpdump package")
    rules = []
    for line in PROFILE.read_text().splitlines():
        m = re.match(r"^\s*(?:owner\s+)?(/\S+)\s+([a-z]+),", line)
        if m and "w" in m.group(2) and "@{" not in m.group(1):
            rules.append(_glob_to_regex(m.group(1)))
    assert rules, "no writable path rules found in the profile"
    return rules


def _writable(path: str) -> bool:
    return any(r.fullmatch(path) for r in _writable_rules())


@pytest.mark.parametrize("iface", ["eth0", "any", "enp3s0f1.100"])
@pytest.mark.parametrize("suffix", ["", "1", "12", "345"])
def test_work_file_names_are_writable_under_the_profile(iface: str, suffix: str) -> None:
    """The -w template capture gives tcpdump, as strftime expands it, plus -C's counter."""
    name = time.strftime(work_template(Path(WORK), 42, iface), time.gmtime(1795700000))
    assert _writable(name + suffix), name + suffix


def test_other_names_are_not_writable() -> None:
    """The check can fail: names outside the profile are refused."""
    assert not _writable(f"{WORK}/g000001-20261126T133612.tmp")
    assert not _writable(f"{WORK}/g000001.pcap.part")
