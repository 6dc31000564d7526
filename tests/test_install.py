"""Installable anywhere (issue 15): a non-editable install works from any folder with no settings.

What the Dockerfile does, in about a minute: build the checkout's wheel, install it
into a fresh venv outside the checkout, then from another working directory run
``callbot models prepare``, ``callbot flows check`` and ``callbot serve`` with no
``CALLBOT_FLOW``/``CALLBOT_VOICES_DIR``: the bundled flow and voice manifest must
come from the installed package, never from the checkout.

Nothing is downloaded: the new venv sees the dependencies already installed in
the running venv through a ``.pth`` file (plain paths: the running venv's own
``.pth`` files, such as the editable install's finder, are not processed), and
the wheel is built without build isolation when the running setuptools can (else
pip's isolated build fetches setuptools, as ``docker build`` would).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from callbot.config import default_cache_dir
from callbot.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = {
    "callbot/bundled_flows/mairie.yaml", "callbot/bundled_flows/mairie.heard.tsv", "callbot/bundled_flows/schema.json",
    "callbot/bundled_voices/voices.yaml", "callbot/bundled_voices/README.md",
}


def _run(cmd: list[str], timings: dict[str, float], label: str, **kw) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    timings[label] = time.monotonic() - t0
    assert r.returncode == 0, f"{label} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _can_build_offline() -> bool:
    """setuptools >= 70.1 builds wheels by itself (older ones need the ``wheel`` package)."""
    try:
        major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    except Exception:
        return False
    if (major, minor) >= (70, 1):
        return True
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return major >= 68


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _healthy(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (OSError, ValueError):
        return None


@pytest.mark.timeout(300)
def test_wheel_installs_and_serves_from_anywhere(tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    py = sys.executable

    # 1. the wheel, with the bundled flow and voice manifest inside, and every module of the checkout
    wheels = tmp_path / "wheels"
    build = [py, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)]
    if _can_build_offline():
        build[4:4] = ["--no-build-isolation", "--no-index"]
    _run(build, timings, "pip wheel", cwd=tmp_path)
    (whl,) = wheels.glob("callbot-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    assert BUNDLED <= names, f"missing from the wheel: {sorted(BUNDLED - names)}"
    tooling = sorted(n for n in names if n.startswith(("callbot_testing/", "tests/", "callbot/testing/", "callbot/bench/")))
    assert not tooling, f"test tooling in the runtime wheel: {tooling[:5]}"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "callbot").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= names, f"not in the wheel (add the package to [tool.setuptools] packages): " \
                             f"{sorted(modules - names)}"
    assert not any(n.startswith(("flows/", "voices/")) for n in names), "top-level flows/voices in site-packages"

    # 2. a fresh venv outside the checkout, seeing the running venv's dependencies, with the wheel installed
    venv = tmp_path / "venv"
    _run([py, "-m", "venv", "--without-pip", str(venv)], timings, "venv")
    vpy = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(vpy), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site / "zz_callbot_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    _run([py, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "--no-index", "-q", str(whl)],
         timings, "pip install")
    callbot = venv / "bin" / "callbot"
    assert callbot.is_file()

    # 3. from another folder, nothing of the checkout: no settings, HOME and caches in tmp
    work = tmp_path / "elsewhere"
    work.mkdir()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBOT_", "XDG_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_CONFIG_HOME=str(home / ".config"), CALLBOT_DATA_DIR=str(tmp_path / "data"),
               CALLBOT_CACHE_DIR=str(tmp_path / "cache"), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    where = _run([str(vpy), "-c", "import callbot, callbot.paths as p, callbot.config as c; "
                  "s = c.Settings.load(); print(callbot.__file__, s.flow, s.voices_dir, sep='\\n')"],
                 timings, "import", cwd=work, env=env).stdout.split("\n")
    installed = site / "callbot"
    assert [Path(w) for w in where[:3]] == [installed / "__init__.py", installed / "bundled_flows" / "mairie.yaml",
                                            installed / "bundled_voices"], where

    # Embedding the flow's examples from scratch takes ~90 s (Whisper's reassembly < 1 s): reuse the sentence
    # embeddings this machine already cached (content-addressed by text; from `scripts/setup`) when there are any.
    seeded = [shutil.copy2(f, _mkdir(tmp_path / "cache" / "nlu")) for f in (default_cache_dir() / "nlu").glob("*.npz")]
    timings["embedding cache files reused"] = len(seeded)
    prep = _run([str(callbot), "models", "prepare"], timings, "models prepare", cwd=work, env=env, timeout=200)
    assert "Whisper model:" in prep.stdout and "TTS voice:" in prep.stdout, prep.stdout
    print("\n" + prep.stdout.strip())

    check = _run([str(callbot), "flows", "check"], timings, "flows check", cwd=work, env=env, timeout=120)
    assert check.stdout.startswith(f"{installed / 'bundled_flows' / 'mairie.yaml'}: ok ("), check.stdout

    port = free_port()
    env_serve = dict(env, CALLBOT_HTTP_PORT=str(port), CALLBOT_SIP_ENABLED="false", CALLBOT_LOG_LEVEL="INFO")
    log_path = tmp_path / "serve.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(callbot), "serve"], cwd=work, env=env_serve, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        health = None
        while time.monotonic() - t0 < 150 and proc.poll() is None and health is None:
            time.sleep(0.3)
            health = _healthy(f"http://127.0.0.1:{port}/healthz")
        timings["serve -> /healthz 200"] = time.monotonic() - t0
        assert health is not None, f"callbot serve not healthy (exit {proc.poll()}):\n{log_path.read_text()[-4000:]}"
        assert health["status"] == "ok", health
    finally:
        t1 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        timings["serve stop"] = time.monotonic() - t1
    text = log_path.read_text(errors="replace")
    assert f"from {installed / 'bundled_flows' / 'mairie.yaml'}," in text, text[-4000:]
    for checkout in ("callbot", "flows", "voices"):  # (dependencies do live in the checkout's .venv)
        assert f"{ROOT / checkout}/" not in text, f"the installed bot used the checkout:\n{text[-4000:]}"

    print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in timings.items()))
