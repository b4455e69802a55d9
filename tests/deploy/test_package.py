"""The package as an operator installs it: `python -m build` gives a wheel and an sdist; a fresh
venv that installs only the wheel (from a local wheelhouse, offline, as on a Pi without
internet) runs `relayd check`, `relayd sim`, `relayd doctor` and, with the demo extra,
`relayd demo`, using the files installed under <venv>/share/relayd/ (docs/deployment.md).
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relayd.core.model import Role
from relayd.testing.keys import make_network
from relayd.testing.mosquitto import MosquittoBroker
from tests.deploy.deploy_support import REPO_ROOT

pytestmark = pytest.mark.slow

CONSTRAINTS = REPO_ROOT / "constraints.txt"
BUILD_TIMEOUT_S = 300
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


def _run(
    cmd: list[str | Path], timeout_s: float, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [str(c) for c in cmd]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=cwd, env=env
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """Wheel and sdist built from the checkout's files (tracked or new, never ignored ones)."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files belong to the source")
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], 60, cwd=REPO_ROOT)
    assert listed.returncode == 0, listed.stderr
    src = tmp_path_factory.mktemp("src")
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO_ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--outdir", out, src], BUILD_TIMEOUT_S)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "deprecated" not in built.stderr.lower(), built.stderr[-3000:]
    (wheel,) = out.glob("relayd-*.whl")
    (sdist,) = out.glob("relayd-*.tar.gz")
    return Dist(wheel, sdist)


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(name).decode())


def _requirement_name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", spec)
    assert match is not None, spec
    return match.group(0).lower().replace("_", "-")


def test_a_relay_install_requires_neither_the_demo_broker_nor_websockets(dist: Dist) -> None:
    requires = _metadata(dist.wheel).get_all("Requires-Dist") or []
    core = {_requirement_name(r) for r in requires if "extra ==" not in r}
    demo = {_requirement_name(r) for r in requires if 'extra == "demo"' in r}
    assert core >= {"aiomqtt", "pynacl", "meshtastic", "prometheus-client"}
    assert not core & {"amqtt", "websockets"}, core
    assert demo == {"amqtt"}
    # Every requirement has an upper bound, so a new major release cannot reach a relay unseen.
    for req in requires:
        if "extra ==" in req and 'extra == "demo"' not in req:
            continue
        assert "<" in req.split(";")[0], f"no upper bound: {req}"


def test_the_sdist_carries_what_the_docs_reference(dist: Dist) -> None:
    import tarfile  # noqa: PLC0415

    with tarfile.open(dist.sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for path in (
        "config/relayd.example.toml",
        "config/sim/neighborhood.toml",
        "config/mosquitto/local.conf",
        "config/systemd/relayd.service",
        "hardware/profiles/relay-node.yaml",
        "hardware/udev/99-meshradio.rules",
        "relayd/data/neighborhood.toml",
        "constraints.txt",
    ):
        assert path in names, path


@dataclass
class Venv:
    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def share(self) -> Path:
        return self.path / "share" / "relayd"

    def relayd(self, *args: str | Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return _run([self.bin / "relayd", *args], timeout_s, env=env, cwd=self.path)

    def pip(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return _run([self.bin / "python", "-m", "pip", "--disable-pip-version-check", *args], PIP_TIMEOUT_S)

    def installed(self) -> set[str]:
        listed = self.pip("list", "--format=json")
        assert listed.returncode == 0, listed.stderr
        return {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}


@pytest.fixture(scope="module")
def wheelhouse(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of relayd and everything it needs (demo extra included), at the tested versions."""
    house = tmp_path_factory.mktemp("wheelhouse")
    shutil.copy2(dist.wheel, house)
    got = _run(
        [
            sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-q",
            "--wheel-dir", house, "-c", CONSTRAINTS, f"relayd[demo] @ {dist.wheel.as_uri()}",
        ],
        PIP_TIMEOUT_S,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr[-3000:]
    return house


@pytest.fixture(scope="module")
def wheel_venv(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    env = Venv(tmp_path_factory.mktemp("wheel-venv") / "venv")
    venv.create(env.path, with_pip=True)
    got = env.pip("install", "-q", "--no-index", "--find-links", wheelhouse, "relayd")
    assert got.returncode == 0, got.stderr[-3000:]
    return env


@pytest.fixture
def sim(wheel_venv: Venv) -> Iterator[int]:
    """`relayd sim` on the installed one-relay scenario; yields the relay radio's TCP port."""
    scenario = wheel_venv.share / "config/sim/one-relay.toml"
    proc = subprocess.Popen(
        [wheel_venv.bin / "relayd", "sim", scenario, "--time-scale", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip() == "ready":
                break
        assert lines, "relayd sim printed nothing"
        assert lines[-1].strip() == "ready", "".join(lines)
        endpoint = re.compile(r"relay\s.*tcp 127\.0\.0\.1:(\d+)")
        ports = [int(m.group(1)) for line in lines if (m := endpoint.search(line))]
        assert ports, "".join(lines)
        yield ports[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def _installed_example(env: Venv, tmp_path: Path, radio_port: int, broker_port: int) -> Path:
    """The installed example config, its /etc and /var paths and endpoints pointed at this test."""
    network = make_network(tmp_path / "keys", {"relay-north": Role.RELAY})
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "mqtt.password").write_text("secret\n")
    (etc / "root.pub").write_bytes(network.pub_path("root").read_bytes())
    (etc / "trust.json").write_bytes(network.bundle_path.read_bytes())
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    key = state / "relay-north.key"
    key.write_bytes(network.key_path("relay-north").read_bytes())
    key.chmod(0o600)
    text = (env.share / "config/relayd.example.toml").read_text()
    text = text.replace("/etc/relayd/", f"{etc}/").replace("/var/lib/relayd", str(state))
    text, radios = re.subn(r'(?m)^device = ".*"$', f'device = "tcp://127.0.0.1:{radio_port}"', text)
    text, brokers = re.subn(r'(?m)^url = "mqtt://.*"$', f'url = "mqtt://127.0.0.1:{broker_port}"', text)
    assert radios == 1
    assert brokers == 1
    config = etc / "relayd.toml"
    config.write_text(text)
    return config


def test_a_wheel_only_venv_has_no_demo_broker_and_says_how_to_get_it(wheel_venv: Venv) -> None:
    installed = wheel_venv.installed()
    assert "relayd" in installed
    assert not installed & {"amqtt", "websockets", "pytest", "hypothesis"}, installed
    got = wheel_venv.relayd("demo", "--headless", "--duration", "1")
    assert got.returncode == 2, got.stdout + got.stderr
    assert "pip install 'relayd[demo]'" in got.stderr
    assert "Traceback" not in got.stderr


def test_a_wheel_only_venv_checks_and_doctors_the_installed_example_against_the_installed_sim(
    wheel_venv: Venv, sim: int, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    for shipped in (
        "config/sim/neighborhood.toml",
        "config/mosquitto/local.conf",
        "config/systemd/relayd.service",
        "hardware/profiles/relay-node.yaml",
        "hardware/udev/99-meshradio.rules",
        "hardware/apply-profile.sh",
        "config/grafana-relayd.json",
    ):
        assert (wheel_venv.share / shipped).is_file(), shipped
    config = _installed_example(wheel_venv, tmp_path, sim, mosquitto.port)
    checked = wheel_venv.relayd("check", "-c", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    doctor = wheel_venv.relayd("doctor", "--json", "--timeout", "10", "-c", config)
    assert "Traceback" not in doctor.stderr, doctor.stderr
    levels = {c["check"]: c["level"] for c in json.loads(doctor.stdout)["checks"]}
    for check in ("config", "device", "radio", "broker", "key", "trust", "clock", "disk"):
        assert levels.get(check, "ok") == "ok", doctor.stdout
    assert levels.get("radio") == "ok", doctor.stdout
    assert levels.get("broker") == "ok", doctor.stdout


def test_the_demo_extra_from_the_wheelhouse_runs_the_demo(wheel_venv: Venv, wheelhouse: Path) -> None:
    got = wheel_venv.pip("install", "-q", "--no-index", "--find-links", wheelhouse, "relayd[demo]")
    assert got.returncode == 0, got.stderr[-3000:]
    assert "amqtt" in wheel_venv.installed()
    demo = wheel_venv.relayd("demo", "--headless", "--duration", "5", "--json", timeout_s=180)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Traceback" not in demo.stderr
