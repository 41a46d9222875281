"""`rollcap list` and `rollcap fetch` (placeholder until retrieval lands)."""

from __future__ import annotations

import argparse

from rollcap.config import RollcapConfig
from rollcap.errors import RollcapError


def add_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", required=True)
    p.add_argument("--until", default="now")


def add_fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", required=True)
    p.add_argument("--until", default="now")
    p.add_argument("-o", "--output", required=True)


def run_list(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    raise RollcapError("list is not implemented yet")


def run_fetch(args: argparse.Namespace, cfg: RollcapConfig) -> int:
    raise RollcapError("fetch is not implemented yet")
