"""Both Dockerfiles pass hadolint, and say what the design asks of each image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.chart.helpers import REPO, run

DOCKERFILES = ("Dockerfile.trainer", "Dockerfile.operator")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_clean(hadolint: str, name: str) -> None:
    proc = run([hadolint, "--no-color", str(REPO / name)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_would_catch_a_problem(hadolint: str, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    proc = run([hadolint, "--no-color", str(bad)], check=False)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pinned_bases_non_root_and_copy_sources_exist(name: str) -> None:
    steps = instructions(REPO / name)
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    stages = {rest.split()[-1] for w, rest in steps if w == "FROM" and " AS " in rest.upper()}
    for word, rest in steps:
        if word == "FROM" and rest.split()[0] not in stages:  # an earlier stage: no tag
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            assert ":" in image and not image.endswith(":latest"), image
        if word == "COPY" and "--from=" not in rest:
            for src in rest.split()[:-1]:
                assert (REPO / src).exists(), f"{name}: COPY {src} does not exist"
    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1].split(":")[0] == "1000", "the last USER must be the non-root 1000"


def test_trainer_image() -> None:
    steps = instructions(REPO / "Dockerfile.trainer")
    runs = [a for w, a in steps if w == "RUN"]
    text = " ".join(a for _, a in steps)
    # torch first, then DeepSpeed against it, then the [trainer] dependencies, then kubetune.
    torch = next(i for i, r in enumerate(runs) if "TORCH_INDEX" in r)
    deepspeed = next(i for i, r in enumerate(runs) if "--no-build-isolation deepspeed" in r)
    assert "['optional-dependencies']['trainer']" in text  # the list of the [trainer] deps
    deps = next(i for i, r in enumerate(runs) if "-r requirements.txt" in r)
    own = next(i for i, r in enumerate(runs) if "pip install --no-deps ." in r)
    assert torch < deepspeed < deps < own
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in text and "TORCH_VARIANT=cu128" in text
    # The torch CUDA wheel brings CUDA/cuDNN: the runtime base is CUDA's `base`, not cudnn.
    assert "cudnn" not in text and "BASE_IMAGE=nvidia/cuda:${CUDA_VERSION}-base-" in text
    assert '+PTX"' in next(a for w, a in steps if w == "ARG" and "TORCH_CUDA_ARCH_LIST" in a)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    final_text = " ".join(a for _, a in final)
    assert "build-essential" not in final_text and "-dev" not in final_text  # no compiler
    assert "HF_HOME=/cache/huggingface" in text and "KUBETUNE_CACHE=/cache/kubetune" in text
    assert "HF_HUB_OFFLINE=0" in text
    entrypoint = next(a for w, a in steps if w == "ENTRYPOINT")
    assert '"kubetune"]' in entrypoint


CACHE_VARS = (
    "KUBETUNE_CACHE",
    "HF_HOME",
    "TORCH_EXTENSIONS_DIR",
    "TRITON_CACHE_DIR",
    "MPLCONFIGDIR",
)


def cache_problems(path: Path) -> list[str]:
    """Why the final stage's cache directories would not be writable by the user it runs as."""
    steps = instructions(path)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for w, a in final if w == "ENV")))
    user_at = max(i for i, (w, _) in enumerate(final) if w == "USER")
    uid = final[user_at][1].split(":")[0]
    made: set[str] = set()
    owned: set[str] = set()
    for word, rest in final[:user_at]:  # as root: after USER a RUN could not create /cache
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", rest):
            argv = cmd.strip(" ()").split()
            if argv[:1] == ["mkdir"]:
                made |= {a for a in argv[1:] if not a.startswith("-")}
            if argv[:1] == ["chown"] and "-R" in argv:
                owner, *paths = [a for a in argv[1:] if not a.startswith("-")]
                if owner.split(":")[0] == uid:
                    owned |= set(paths)
    problems = []
    for var in CACHE_VARS:
        where = env.get(var)
        if where is None:
            problems.append(f"{var} is not set")
            continue
        inside = {d for d in made | owned if where == d or where.startswith(d.rstrip("/") + "/")}
        if not inside & made:
            problems.append(f"no RUN before USER creates {where} ({var})")
        if not inside & owned:
            problems.append(f"no RUN before USER chowns {where} ({var}) to UID {uid}")
    return problems


def test_trainer_cache_directory_is_created_and_owned_by_its_user() -> None:
    assert cache_problems(REPO / "Dockerfile.trainer") == []


def test_cache_check_would_catch_a_root_owned_cache(tmp_path: Path) -> None:
    text = (REPO / "Dockerfile.trainer").read_text()
    for broken in (
        text.replace("chown -R 1000:1000 /cache", "chown -R 0:0 /cache"),
        text.replace(" && chown -R 1000:1000 /cache /workspace", ""),
        text.replace("mkdir -p /cache /workspace", "mkdir -p /workspace"),
    ):
        assert broken != text
        bad = tmp_path / "Dockerfile"
        bad.write_text(broken)
        assert cache_problems(bad), broken


def test_operator_image_has_no_torch() -> None:
    steps = instructions(REPO / "Dockerfile.operator")
    text = " ".join(a for _, a in steps)
    assert "['optional-dependencies']['operator']" in text  # installs [operator]'s deps only
    assert "trainer']" not in text and "pytorch" not in text
    assert next(a for w, a in steps if w == "ENTRYPOINT") == '["python", "-m", "kubetune_operator"]'
    assert {"8080", "8081"} <= set(next(a for w, a in steps if w == "EXPOSE").split())


def test_dockerignore_lets_every_copy_source_in() -> None:
    patterns = (REPO / ".dockerignore").read_text().splitlines()
    assert "**" in patterns, "exclude everything, then re-include what the images need"
    allowed = [p[1:].removesuffix("/**") for p in patterns if p.startswith("!")]
    for name in DOCKERFILES:
        for word, rest in instructions(REPO / name):
            if word == "COPY" and "--from=" not in rest:
                for src in rest.split()[:-1]:
                    assert any(src.rstrip("/") == a or src.startswith(a + "/") for a in allowed), (
                        f"{name}: COPY {src} is excluded by .dockerignore"
                    )
