"""Build and run the project's Dockerfile without a Docker daemon: its own steps, in a Debian chroot.

No Docker daemon runs on the machines that test callbot, and a Dockerfile nobody built is a file
whose steps fail. This runs the same instructions for real: the base image is emulated by a Debian
bookworm root made with ``debootstrap`` plus Debian's Python 3.11 in a virtual environment placed
first on ``PATH`` (what ``python:3.11-slim-bookworm`` gives: ``python``/``pip``/console scripts on
PATH, pip allowed to install), then every ``RUN``/``COPY``/``WORKDIR``/``USER``/``ENV`` of the file
runs in a fresh copy of that root (``RUN`` with the network, as ``docker build`` does), then ``CMD``
runs as the image's user in its own network namespace (its 0.0.0.0 reaches nothing outside), and the
``HEALTHCHECK`` command runs beside it in that namespace, as the Docker daemon would.

Not emulated: layers and their cache, the base image's exact file set, resource limits.
Needs root (chroot, mount, unshare) and ``debootstrap``. ``scripts/check-dockerfile`` is the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ["python3.11", "python3.11-venv", "python3-pip", "ca-certificates"]
PYENV = "/usr/local/python"  # the emulated image's Python; first on PATH
PATH = f"{PYENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# The builder's network, not the image's settings (docker build passes proxies the same way): where a
# TLS-inspecting proxy sits between this machine and PyPI, its CA is in the host's bundle only.
BUILD_ENV = {"PIP_CERT": "/etc/ssl/builder-ca.crt"}


# Docker's default bridge gives a container lo and eth0 (172.17.0.x); a veth pair with both ends inside the
# namespace stands in for it, so what binds "every interface" binds what it would in Docker, and nothing is
# reachable from outside.
CONTAINER_IP = "172.17.0.2"
NETWORK = ("ip link set lo up && ip link add eth0 type veth peer name bridge0 && "
           f"ip addr add {CONTAINER_IP}/16 dev eth0 && ip link set eth0 up && ip link set bridge0 up")


class DockerfileError(Exception):
    """A step of the Dockerfile failed, or the file says something this runner does not do."""


@dataclass
class Step:
    line: int
    op: str
    arg: str


@dataclass
class Image:
    """What the build leaves for the run: the image's settings."""

    rootfs: Path
    env: dict[str, str] = field(default_factory=lambda: {"PATH": PATH})
    workdir: str = "/"
    user: str = "root"
    cmd: list[str] = field(default_factory=list)
    healthcheck: str = ""
    expose: list[str] = field(default_factory=list)


def parse(text: str) -> list[Step]:
    """Instructions with their first line number; continuation lines joined, comments dropped."""
    steps: list[Step] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, arg = buf.partition(" ")
        steps.append(Step(start, op.upper(), arg.strip()))
        buf = ""
    if buf:
        raise DockerfileError(f"Dockerfile:{start}: instruction ends with a line continuation")
    return steps


def _env_pairs(arg: str) -> dict[str, str]:
    parts = shlex.split(arg)
    if parts and "=" not in parts[0]:  # legacy form: ENV KEY value with spaces
        return {parts[0]: " ".join(parts[1:])}
    return dict(p.split("=", 1) for p in parts)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def base_rootfs(cache: Path) -> Path:
    """Debian bookworm + Python 3.11 in a venv on PATH, made once and reused (``cache``/base)."""
    base = cache / "base"
    if (base / ".ready").exists():
        return base
    if shutil.which("debootstrap") is None:
        raise DockerfileError("debootstrap is not installed (apt-get install debootstrap)")
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    t0 = time.monotonic()
    _run(["debootstrap", "--variant=minbase", "bookworm", str(base), MIRROR], stdout=subprocess.DEVNULL)
    with Mounted(base):
        _chroot(base, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                f"--no-install-recommends {' '.join(BASE_PACKAGES)} >/dev/null && "
                f"python3.11 -m venv {PYENV} && {PYENV}/bin/pip install -q --upgrade pip && apt-get clean",
                user="root", env={"PATH": PATH, **BUILD_ENV}, workdir="/")
    (base / ".ready").write_text(f"{time.monotonic() - t0:.0f} s\n")
    return base


class Mounted:
    """/proc, /sys, /dev and the host's resolver inside a root, unmounted on exit."""

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self.points: list[Path] = []

    def __enter__(self) -> "Mounted":
        for src, dst, opts in (("proc", "proc", ["-t", "proc"]), ("/sys", "sys", ["--rbind", "-o", "ro"]),
                               ("/dev", "dev", ["--rbind"])):
            target = self.rootfs / dst
            target.mkdir(exist_ok=True)
            _run(["mount", *opts, src, str(target)])
            self.points.append(target)
        shutil.copy("/etc/resolv.conf", self.rootfs / "etc" / "resolv.conf")
        if HOST_CA.exists():
            (self.rootfs / "etc" / "ssl").mkdir(parents=True, exist_ok=True)
            shutil.copy(HOST_CA, self.rootfs / "etc" / "ssl" / "builder-ca.crt")
        return self

    def __exit__(self, *exc) -> None:
        for p in reversed(self.points):
            subprocess.run(["umount", "-l", str(p)], check=False)


def remove_rootfs(path: Path) -> None:
    """Delete a built root, never while something is still mounted inside it (that would be the host's /dev)."""
    inside = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(path.resolve()) + "/")]
    if inside:
        raise DockerfileError(f"not removing {path}: still mounted inside: {inside}")
    shutil.rmtree(path, ignore_errors=True)


def _chroot_argv(rootfs: Path, script: str, *, user: str, env: dict[str, str], workdir: str,
                 exec_: bool = False) -> list[str]:
    home = "/root" if user == "root" else _home(rootfs, user)
    full = {"HOME": home, **env}
    return ["chroot", f"--userspec={user}:{user}" if user != "root" else "--userspec=0:0", str(rootfs),
            "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in full.items()],
            "/bin/sh", "-c", f"cd {shlex.quote(workdir)} && {'exec ' if exec_ else ''}{script}"]


def _chroot(rootfs: Path, script: str, **kw) -> None:
    _run(_chroot_argv(rootfs, script, **kw))


def _home(rootfs: Path, user: str) -> str:
    for line in (rootfs / "etc" / "passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return f[5]
    raise DockerfileError(f"USER {user}: no such user in the image")


def build(dockerfile: Path, context: Path, rootfs: Path, log=print) -> Image:
    """Every instruction of ``dockerfile`` in ``rootfs`` (a copy of the base), as ``docker build`` would."""
    image = Image(rootfs=rootfs)
    with Mounted(rootfs):
        for step in parse(dockerfile.read_text()):
            where = f"{dockerfile.name}:{step.line}"
            t0 = time.monotonic()
            if step.op == "FROM":
                if "python:3.11" not in step.arg:
                    raise DockerfileError(f"{where}: base {step.arg!r} is not emulated (python:3.11-* only)")
            elif step.op == "RUN":
                try:
                    _chroot(rootfs, step.arg, user=image.user, env={**image.env, **BUILD_ENV},
                            workdir=image.workdir)
                except subprocess.CalledProcessError as e:
                    raise DockerfileError(f"{where}: RUN failed (exit {e.returncode}): {step.arg[:200]}") from e
            elif step.op == "COPY":
                *srcs, dst = shlex.split(step.arg)
                dest = rootfs / (dst if dst.startswith("/") else f"{image.workdir}/{dst}").lstrip("/")
                for src in srcs:
                    s = context / src
                    if not s.exists():
                        raise DockerfileError(f"{where}: COPY {src}: not in the build context")
                    if s.is_dir():
                        shutil.copytree(s, dest, dirs_exist_ok=True,  # a directory's contents, as Docker does
                                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                    else:
                        dest.mkdir(parents=True, exist_ok=True) if dst.endswith("/") else dest.parent.mkdir(
                            parents=True, exist_ok=True)
                        shutil.copy2(s, dest / s.name if dst.endswith("/") else dest)
            elif step.op == "WORKDIR":
                image.workdir = step.arg if step.arg.startswith("/") else f"{image.workdir}/{step.arg}"
                (rootfs / image.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif step.op == "USER":
                image.user = step.arg
                _home(rootfs, step.arg)
            elif step.op == "ENV":
                image.env.update(_env_pairs(step.arg))
            elif step.op == "EXPOSE":
                image.expose += step.arg.split()
            elif step.op == "HEALTHCHECK":
                _, _, cmd = step.arg.partition(" CMD ")
                image.healthcheck = cmd.strip()
            elif step.op == "CMD":
                image.cmd = json.loads(step.arg) if step.arg.startswith("[") else ["/bin/sh", "-c", step.arg]
            else:
                raise DockerfileError(f"{where}: {step.op} is not handled by this runner")
            log(f"[{where}] {step.op} {step.arg[:70]}{'…' if len(step.arg) > 70 else ''} "
                f"({time.monotonic() - t0:.1f} s)")
    return image


def run_and_probe(image: Image, timeout: float = 180.0, log=print) -> dict:
    """``CMD`` as the image's user in a private network namespace, then its HEALTHCHECK until it passes."""
    report: dict = {"healthy": False}
    with Mounted(image.rootfs):
        argv = _chroot_argv(image.rootfs, " ".join(shlex.quote(a) for a in image.cmd), user=image.user,
                            env=image.env, workdir=image.workdir, exec_=True)  # CMD is the container's pid 1
        out = open(image.rootfs / "tmp" / "container.log", "wb")
        proc = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", f'{NETWORK} && exec "$@"', "sh",
                                 *argv], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            t0 = time.monotonic()
            check = _chroot_argv(image.rootfs, image.healthcheck, user=image.user, env=image.env,
                                 workdir=image.workdir)
            while time.monotonic() - t0 < timeout:
                if proc.poll() is not None:
                    break
                probe = subprocess.run(["nsenter", f"--net=/proc/{proc.pid}/ns/net", *check],
                                       capture_output=True, timeout=30)
                if probe.returncode == 0:
                    report["healthy"] = True
                    report["healthy_after_s"] = round(time.monotonic() - t0, 1)
                    break
                time.sleep(1)
            ss = subprocess.run(["nsenter", f"--net=/proc/{proc.pid}/ns/net", "ss", "-lntuH"],
                                capture_output=True, text=True)
            report["listening"] = sorted({f"{c[4]}/{c[0]}" for c in (l.split() for l in ss.stdout.splitlines())
                                          if len(c) > 4})
            uids = subprocess.run(["ps", "-o", "uid=,comm=", "-p", str(proc.pid)], capture_output=True, text=True)
            report["pid1_uid_and_command"] = uids.stdout.strip()
        finally:
            os.kill(proc.pid, 15)  # docker stop: SIGTERM to pid 1, SIGKILL after the grace period
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
            out.close()
        report["exit_code_on_sigterm"] = proc.returncode
        text = (image.rootfs / "tmp" / "container.log").read_text(errors="replace")
        report["log_tail"] = text[-3000:]
        report["log_warnings"] = [line[:200] for line in text.splitlines()
                                  if " WARNING " in line or " ERROR " in line][:10]
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="check-dockerfile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "callbot" / "dockerfile-base",
                    help="where the Debian base root is kept between runs")
    ap.add_argument("--keep", action="store_true", help="keep the built root (printed) for a look inside")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("check-dockerfile needs root (chroot, mount, unshare)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    base = base_rootfs(args.cache)
    print(f"base root ready ({time.monotonic() - t0:.0f} s): {base}")
    work = Path(tempfile.mkdtemp(prefix="callbot-image-"))
    rootfs = work / "rootfs"
    try:
        _run(["cp", "-a", str(base), str(rootfs)])
        t1 = time.monotonic()
        image = build(args.dockerfile, args.dockerfile.parent, rootfs)
        print(f"built in {time.monotonic() - t1:.0f} s; user {image.user}, cmd {image.cmd}, expose {image.expose}")
        report = run_and_probe(image)
        print(json.dumps({k: v for k, v in report.items() if k != "log_tail"}, indent=2))
        if not report["healthy"]:
            print(report["log_tail"], file=sys.stderr)
            return 1
        return 0
    except DockerfileError as e:
        print(f"check-dockerfile: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept: {rootfs}")
        else:
            remove_rootfs(work)


if __name__ == "__main__":
    raise SystemExit(main())
