"""(interim) expected failures under Prefect."""
from __future__ import annotations


def run_flow_cli(flow_fn, *args, **kwargs):
    return flow_fn(*args, **kwargs)
