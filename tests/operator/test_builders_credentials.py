"""Pure: the redaction helpers of kubetune_api.uris and the manifests built with them."""

from __future__ import annotations

import base64
import json

import pytest

from kubetune_api.loader import parse_job
from kubetune_api.uris import redact_spec, redact_text, split_credentials, strip_spec_credentials
from kubetune_operator import builders as b
from tests.support.kube.operator import OWNER, load_ftj


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("https://u:p%40ss@host:5000/x", ("https://host:5000/x", "u", "p@ss")),
        ("http://token@host", ("http://host", "token", None)),
        ("http://host:5000/a@b", ("http://host:5000/a@b", None, None)),  # @ in the path
        ("sqlite:///tmp/mlflow.db", ("sqlite:///tmp/mlflow.db", None, None)),
    ],
)
def test_split_credentials(url, want):
    assert split_credentials(url) == want


def test_redact_text_masks_every_url_and_nothing_else():
    text = "GET http://u:pw1@h:1/api failed; retry https://a:pw2@c/x?q=a@b (user@example.com)"
    assert redact_text(text) == (
        "GET http://***@h:1/api failed; retry https://***@c/x?q=a@b (user@example.com)"
    )
    spec = {"tracking": {"mlflowUri": "http://u:pw@h"}, "tags": ["s3://b/k", "http://x:y@z"]}
    assert redact_spec(spec) == {
        "tracking": {"mlflowUri": "http://***@h"},
        "tags": ["s3://b/k", "http://***@z"],
    }
    assert spec["tracking"]["mlflowUri"] == "http://u:pw@h"  # a copy


def test_strip_spec_credentials_leaves_the_input_and_other_fields():
    spec = {"tracking": {"mlflowUri": "http://u:pw@h:5000"}, "output": {"uri": "s3://b/p"}}
    clean, env = strip_spec_credentials(spec)
    assert clean == {"tracking": {"mlflowUri": "http://h:5000"}, "output": {"uri": "s3://b/p"}}
    assert env == {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "pw"}
    assert spec["tracking"]["mlflowUri"] == "http://u:pw@h:5000"
    assert strip_spec_credentials({"tracking": "x"}) == ({"tracking": "x"}, {})


def test_configmap_secret_and_job_with_url_credentials():
    doc = load_ftj(tracking={"mlflowUri": "http://alice:kt-pw-canary@mlflow:5000"})
    job = parse_job(doc)
    cm = b.build_configmap(job, OWNER, doc["spec"])
    assert "kt-pw-canary" not in json.dumps(cm)
    assert json.loads(cm["data"]["finetunejob.json"])["spec"]["tracking"]["mlflowUri"] == (
        "http://mlflow:5000"
    )
    secret = b.build_secret(OWNER, {"MLFLOW_TRACKING_PASSWORD": "pw"})
    name = f"{OWNER.name}-url-credentials-{OWNER.uid[:8]}"
    assert secret["metadata"]["name"] == name
    assert secret["metadata"]["ownerReferences"] == [b.owner_reference(OWNER)]
    assert secret["data"] == {"MLFLOW_TRACKING_PASSWORD": base64.b64encode(b"pw").decode()}
    manifest = b.build_job(job, OWNER, 1, url_credentials=True)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": name}} in container["envFrom"]
    plain = b.build_job(job, OWNER, 1)["spec"]["template"]["spec"]["containers"][0]
    assert all(ref["secretRef"]["name"] != name for ref in plain.get("envFrom", []))


def test_strip_spec_credentials_copies_only_the_section_it_changes():
    # Copy on write (a deep copy per reconcile was a fifth of a new job's operator CPU):
    # the input stays whole, untouched sections are shared, the changed one is new.
    spec = {"tracking": {"mlflowUri": "http://u:pw@h"}, "model": {"base": "m"}}
    clean, _ = strip_spec_credentials(spec)
    assert clean["model"] is spec["model"]
    assert clean["tracking"] is not spec["tracking"]
    assert spec == {"tracking": {"mlflowUri": "http://u:pw@h"}, "model": {"base": "m"}}
    untouched, _ = strip_spec_credentials({"tracking": {"mlflowUri": "http://h"}})
    assert untouched == {"tracking": {"mlflowUri": "http://h"}}
