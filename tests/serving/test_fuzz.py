"""API fuzzing from the OpenAPI schema (schemathesis): generated requests to every operation, valid
and invalid, never get a 5xx. Runs on its own generated shop (some requests write to it)."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from vitrina.config import Config
from vitrina.data.storage import Storage
from vitrina.search.engine import Models
from vitrina.serving.app import create_app

EXAMPLES = 15


def _fuzz(operation: Any, calls: dict[str, int]) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        response = case.call()
        calls[label] = calls.get(label, 0) + 1
        assert response.status_code < 500, f"{label} -> {response.status_code}: {response.text[:300]}"

    fuzz()


def test_no_operation_answers_5xx(served: tuple[Config, Storage, Models]) -> None:
    cfg, storage, models = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(cfg, models, storage))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    calls: dict[str, int] = {}
    for operation in operations:
        _fuzz(operation, calls)
    assert len(calls) == len(operations)  # every operation was called
