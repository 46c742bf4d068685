"""The platform's trainer defaults through the real operator: `python -m kubetune_operator
--trainer-defaults FILE` against the API emulator builds every attempt's Job with them and
the job's spec.pod on top; a bad file or defaults outside the allow-lists stop it at start;
the allow-lists apply to what the pods would really run (job's value, else the default)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune_api.trainer_defaults import load_trainer_defaults
from kubetune_operator.__main__ import operator_config, parse_args
from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, EmulatorServer, run_operator, wait_for
from tests.support.kube.operator import HERE, NS, cond, load_ftj, phase_is, posts

DEFAULTS_FILE = HERE / "trainer-defaults.yaml"
HF_TOKEN = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}


def operator_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "kubetune_operator", "--namespace", NS, "--standalone",
            "--metrics-port", "0", "--liveness-port", "0", "--reconcile-interval", "0.5",
            *extra]  # fmt: skip


def test_the_operator_process_reads_the_file_and_builds_pods_with_it(cluster: EmulatorServer):
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    log = cluster.workdir / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            operator_cmd("--trainer-defaults", str(DEFAULTS_FILE)),
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        doc = load_ftj(pod={"env": [HF_TOKEN], "labels": {"team": "nlp"}})
        del doc["spec"]["resources"]["serviceAccountName"]
        cluster.create(FTJ, doc)
        job = wait_for(
            lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"),
            timeout=40, what=f"the Job\n{log.read_text()[-2000:]}",
        )  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    pod = job["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    assert ctr["env"][-4:] == [
        {"name": "NCCL_SOCKET_IFNAME", "value": "eth0"},
        {"name": "NCCL_DEBUG", "value": "WARN"},
        {"name": "LD_LIBRARY_PATH", "value": "/opt/aws-ofi-nccl/lib"},
        HF_TOKEN,
    ]
    assert ctr["resources"]["limits"]["nvidia.com/mig-3g.40gb"] == "2"
    assert "nvidia.com/gpu" not in ctr["resources"]["limits"]
    assert pod["volumes"][3] == {
        "name": "cache",
        "persistentVolumeClaim": {"claimName": "kubetune-cache", "readOnly": False},
    }
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "trainer"  # the default: the job names none
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert (labels["team"], labels["cost-center"], labels["kubetune.io/job"]) == (
        "nlp", "ml-platform", "llama-lora",
    )  # fmt: skip


def start_error(*args: str) -> None:
    with pytest.raises(SystemExit) as info:
        operator_config(parse_args(["--namespace", NS, "--standalone", *args]))
    assert info.value.code == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("env:\n  - {name: KUBETUNE_ATTEMPT, value: '9'}\n",
         "--trainer-defaults: {file}: env: env[0]: 'KUBETUNE_ATTEMPT' is set by"),
        ("gpuResourceName: gpu\n", "{file}: gpuResourceName: "),
        ("volumeMounts:\n  - {name: x, mountPath: /tmp}\n", "{file}: volumeMounts[0].mountPath"),
    ],
)  # fmt: skip
def test_a_bad_defaults_file_stops_the_operator_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
):
    f = tmp_path / "defaults.yaml"
    f.write_text(text)
    start_error("--trainer-defaults", str(f))
    err = capsys.readouterr().err
    assert message.format(file=f) in err, err
    assert "Traceback" not in err


def test_defaults_outside_the_allow_lists_stop_the_operator_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    f = tmp_path / "defaults.yaml"
    f.write_text("serviceAccountName: builder\n")
    start_error("--trainer-defaults", str(f), "--allowed-service-account", "trainer")
    assert "serviceAccountName 'builder' is not allowed" in capsys.readouterr().err
    start_error("--image", "evil.example/x:1", "--allowed-image", "registry.test/*")
    assert "--image 'evil.example/x:1' is not allowed" in capsys.readouterr().err
    args = parse_args(["-n", NS, "--standalone", "--trainer-defaults", str(DEFAULTS_FILE),
                       "--allowed-service-account", "trainer"])  # fmt: skip
    config = operator_config(args)
    assert config.trainer_defaults == load_trainer_defaults(DEFAULTS_FILE)


def test_allow_lists_apply_to_the_default_account_and_to_job_overrides(cluster: EmulatorServer):
    # A default the lists refuse cannot pass start-up (above); an operator configured in code
    # still checks it per job, and a job's own account is checked as before.
    defaults = load_trainer_defaults(DEFAULTS_FILE).model_copy(
        update={"service_account_name": "builder"}
    )
    config = OperatorConfig(
        reconcile_interval=0.5, metrics_port=None, image="registry.test/trainer:1",
        allowed_images=("registry.test/trainer:*",), allowed_service_accounts=("trainer",),
        trainer_defaults=defaults,
    )  # fmt: skip
    with run_operator(cluster, [NS], config):
        doc = load_ftj()
        del doc["spec"]["resources"]["serviceAccountName"]
        cluster.create(FTJ, doc)
        st = wait_for(lambda: phase_is(cluster, "Failed"), what="Failed")
        failed = cond(st, "Failed")
        assert failed["reason"] == "Forbidden"
        assert "serviceAccountName 'builder' is not allowed" in failed["message"]
        assert not posts(cluster, "jobs")
