"""The deployment examples (examples/deploy/) parse, and every engine command in them names real flags with values
the command line accepts, at addresses and paths that fit together (trainers connect to the engine's Service,
keys are mounted where the flags look for them)."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml
from support import ROOT

from engine.cli import build_parser

DEPLOY = ROOT / "examples" / "deploy"


def accepted(argv: list[str]) -> Any:
    """The engine's own parser on ``argv`` (after ``engine``): an unknown flag or bad value fails the test."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"engine {shlex.join(argv)} is not a command the engine accepts")


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the trainer image's Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_trainer_image_builds_from_the_projects_files_and_runs_a_trainer() -> None:
    instructions = dockerfile()
    assert instructions[0][0] == "FROM" and "python:3.11" in instructions[0][1]
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *sources, _ = arguments.split()
            assert all((ROOT / source).exists() for source in sources), arguments
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    command = json.loads(dict(instructions)["CMD"])
    assert entrypoint == ["engine", "trainer"]
    args = accepted(entrypoint[1:] + command)
    assert args.connect == "tcp://engine:5555" and not args.once, "a container's trainer is a daemon"


def kubernetes() -> dict[str, dict[str, Any]]:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in documents}


def mounted_files(pod: dict[str, Any], container: dict[str, Any]) -> set[str]:
    """The paths of the secret files a container sees."""
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    files = set()
    for mount in container["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is not None:
            files |= {str(PurePosixPath(mount["mountPath"]) / item["path"]) for item in secret["items"]}
    return files


def test_the_kubernetes_trainers_reach_the_engine_through_its_service_with_the_keys_they_name() -> None:
    objects = kubernetes()
    service, job = objects["Service/lineage-engine"], objects["Job/lineage-engine"]
    trainers = objects["Deployment/lineage-trainers"]
    engine_pod, trainer_pod = job["spec"]["template"]["spec"], trainers["spec"]["template"]["spec"]
    [engine], [trainer] = engine_pod["containers"], trainer_pod["containers"]
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert trainers["spec"]["selector"]["matchLabels"] == trainers["spec"]["template"]["metadata"]["labels"]

    serve = accepted(engine["command"][1:] + engine["args"])
    assert serve.command == "serve"
    ports = {port["targetPort"] for port in service["spec"]["ports"]}
    assert {int(serve.bind.rsplit(":", 1)[1]), int(serve.pub.rsplit(":", 1)[1])} == ports
    assert {f"{serve.keys}/server.key", f"{serve.keys}/server.key_secret",
            f"{serve.keys}/authorized/trainer.key"} <= mounted_files(engine_pod, engine)
    runs = {mount["mountPath"] for mount in engine["volumeMounts"] if mount["name"] == "runs"}
    assert {str(serve.run.parent)} == runs, "the run lives on the claimed volume, so a restarted pod resumes it"

    train = accepted(["trainer", *trainer["args"]])  # the image's entrypoint is `engine trainer`
    host, port = train.connect.removeprefix("tcp://").rsplit(":", 1)
    assert host == service["metadata"]["name"] and int(port) == int(serve.bind.rsplit(":", 1)[1])
    assert {str(train.server_key), str(train.key)} <= mounted_files(trainer_pod, trainer)
    assert not train.once, "trainers serve run after run"


def test_the_systemd_unit_starts_a_trainer_daemon() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "lineage-trainer@.service")
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    executable, *argv = shlex.split(service["ExecStart"].replace("${ENGINE}", "tcp://engine-host:5555"))
    assert executable.endswith("/engine") and service["KillSignal"] == "SIGTERM"
    args = accepted(argv)
    assert args.command == "trainer" and args.connect == "tcp://engine-host:5555"


def test_the_slurm_job_array_is_valid_bash_and_its_trainers_leave_when_idle() -> None:
    script = DEPLOY / "trainers.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert re.search(r"^#SBATCH --array=\d+-\d+$", text, re.MULTILINE)
    command = re.search(r"^exec srun engine (.*?)$(?<!\\)", re.sub(r"\\\n\s*", " ", text), re.MULTILINE).group(1)
    args = accepted(shlex.split(command))
    assert args.command == "trainer" and args.idle_exit == 600 and args.connect == "$ENGINE"
