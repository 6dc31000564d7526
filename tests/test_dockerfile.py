"""The Dockerfile, built and run by its own steps (``callbot_testing/dockerfile.py``: a Debian chroot, no daemon).

The parser runs in the normal suite; the build (~4-6 min: Debian base once, pip install from PyPI, model
preparation) and the run with its health check are ``--slow``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from callbot_testing import dockerfile as D

ROOT = Path(__file__).resolve().parents[1]


def test_parse_joins_continuations_and_keeps_line_numbers() -> None:
    steps = D.parse("# c\nFROM python:3.11-slim\n\nRUN a \\\n  && b\n# inside\nENV A=1 B=2\nCMD [\"x\"]\n")
    assert [(s.line, s.op) for s in steps] == [(2, "FROM"), (4, "RUN"), (7, "ENV"), (8, "CMD")]
    assert steps[1].arg == "a  && b"
    assert D._env_pairs(steps[2].arg) == {"A": "1", "B": "2"}


def test_parse_refuses_a_dangling_continuation() -> None:
    with pytest.raises(D.DockerfileError, match="Dockerfile:2"):
        D.parse("FROM python:3.11\nRUN a \\\n")


def test_the_projects_dockerfile_uses_only_handled_instructions() -> None:
    ops = {s.op for s in D.parse((ROOT / "Dockerfile").read_text())}
    assert ops <= {"FROM", "RUN", "COPY", "WORKDIR", "USER", "ENV", "EXPOSE", "HEALTHCHECK", "CMD"}
    assert {"USER", "HEALTHCHECK", "EXPOSE"} <= ops


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(os.geteuid() != 0, reason="chroot, mount and unshare need root")
@pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap (Debian package) not installed")
def test_dockerfile_builds_runs_as_a_user_and_passes_its_health_check(tmp_path: Path) -> None:
    base = D.base_rootfs(Path.home() / ".cache" / "callbot" / "dockerfile-base")
    rootfs = tmp_path / "rootfs"
    D._run(["cp", "-a", str(base), str(rootfs)])
    try:
        image = D.build(ROOT / "Dockerfile", ROOT, rootfs)
        assert image.user != "root" and image.cmd == ["callbot", "serve"]
        report = D.run_and_probe(image)
        print({k: v for k, v in report.items() if k != "log_tail"})
        assert report["healthy"], report["log_tail"]
        uid = int(report["pid1_uid_and_command"].split()[0])
        assert uid != 0, "the container's process runs as root"
        for port in image.expose:  # what the image exposes is what it listens on, on the container's interface
            number, _, proto = port.partition("/")
            assert any(entry.endswith(f":{number}/{proto or 'tcp'}")
                       and entry.rsplit(":", 1)[0] in ("0.0.0.0", "*", D.CONTAINER_IP)
                       for entry in report["listening"]), (port, report["listening"])
        assert report["exit_code_on_sigterm"] == 0, report["log_tail"]
    finally:
        D.remove_rootfs(rootfs)
