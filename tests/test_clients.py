"""Recipes that need seconds of set-up, run from docs/recipes.md itself (the slow group).

A distributed Dask ``LocalCluster`` with worker *processes*: each worker resolves the
``bfa://`` URL from the environment and the shared cache, so the answer must equal a local
read, and the cache holds the file once.
"""

from __future__ import annotations

import pytest

import intake_bfa

from .conftest import V_OLD
from .test_docs import blocks

pytestmark = pytest.mark.slow


def test_the_dask_local_cluster_recipe_runs(published):
    (block,) = [b for b in blocks("recipes.md") if b.first_line.startswith("from dask.distributed")]
    ns: dict = {}
    exec("import dask.dataframe as dd\n" + block.code, ns)
    want = intake_bfa.read("daily_availability", V_OLD, symbols="BTCUSDT").available.sum()
    assert ns["btc_days"] == int(want) > 0
