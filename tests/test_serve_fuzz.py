"""``bfa serve`` fuzzed from its own OpenAPI schema with schemathesis, over real HTTP.

Every operation of the served ``/openapi.json`` gets generated requests, valid
(positive) and invalid (negative: wrong types, out-of-range values, odd strings in
SQL and paths). Checked on each answer: never a 5xx; the status is one the schema
documents; the content type and the body match the schema (the JSON error model
included); invalid input is refused with a 4xx.

(schemathesis' ``from_fixture`` does not work with pytest 9, so each operation's
strategy is driven by hypothesis directly; the cases are derandomized, so a failure
is reproducible.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow  # schemathesis over every operation: ~18 s; runs in .ci/run

OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/v1/versions"),
    ("GET", "/v1/datasets"),
    ("GET", "/v1/snapshot"),
    ("GET", "/v1/timeline/{symbol}"),
    ("GET", "/v1/universe"),
    ("GET", "/v1/sql"),
    ("POST", "/v1/sql"),
]
#: Operations with inputs: only they can be sent invalid data.
WITH_INPUTS = OPERATIONS[3:]
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in WITH_INPUTS
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_url(api.url + "/openapi.json")


def test_every_operation_is_fuzzed(api_schema):
    served = {
        (op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())
    }
    assert served == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=lambda v: getattr(v, "value", v))
def test_operation_conforms_to_the_schema(api_schema, method, path, mode):
    operation = api_schema[path][method]
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        case.call_and_validate(checks=checks)

    run()


def test_the_fuzzing_reached_the_server(api):
    """The cases above really ran over HTTP: valid answers and refusals in the access log."""
    from collections import Counter

    records = api.access_records()
    by_path = Counter((r["path"].split("/v1/timeline/")[0], r["status"] // 100) for r in records)
    for path in ("/v1/snapshot", "/v1/universe", "/v1/sql"):
        assert by_path[(path, 4)] >= 20, (path, by_path)
    assert by_path[("", 4)] + by_path[("", 2)] >= 20  # timelines, by symbol
    assert not any(r["status"] >= 500 for r in records)
