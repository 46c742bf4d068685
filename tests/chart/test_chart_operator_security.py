"""The chart passes the operator's security settings through to its flags (read back with
the operator's own parser) and its schema rejects malformed ones."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.chart.helpers import (
    CHART,
    RELEASE,
    Manifests,
    one,
    operator_options,
    run,
)

Render = Callable[..., Manifests]


def test_security_defaults_allow_aws_s3_only_and_any_image(render: Render) -> None:
    opts = operator_options(one(render(), "Deployment"))
    assert opts.s3_endpoint_allow == [] and opts.allowed_image == []
    assert opts.allowed_service_account == []


def test_allow_lists_reach_the_operator(render: Render) -> None:
    deployment = one(
        render(
            None,
            "operator.s3EndpointAllow[0]=http://minio.storage.svc:9000",
            "operator.allowedImages[0]=ghcr.io/kubetune/trainer:*",
            "operator.allowedImages[1]=registry.example/ml/*@sha256:*",
            "operator.allowedServiceAccounts[0]=trainer",
        ),
        "Deployment",
    )
    opts = operator_options(deployment)
    assert opts.s3_endpoint_allow == ["http://minio.storage.svc:9000"]
    assert opts.allowed_image == ["ghcr.io/kubetune/trainer:*", "registry.example/ml/*@sha256:*"]
    assert opts.allowed_service_account == ["trainer"]


@pytest.mark.parametrize(
    "bad",
    [
        "operator.s3EndpointAllow[0]=minio:9000",  # not a URL: would never match
        "operator.allowedServiceAccounts[0]=Not_A_Name",
        "operator.allowedImages[0]=",
    ],
)
def test_schema_rejects_malformed_allow_lists(helm: str, bad: str) -> None:
    proc = run([helm, "template", RELEASE, str(CHART), "--set", bad], check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower(), proc.stderr
