"""aigw service: the rendered launchd/systemd files, install/uninstall/status against fake
launchctl/systemctl (stateful fakes, never the real ones), and the CLI end to end on Linux with a
fake `systemctl` script on PATH. Nothing here touches the real ~, launchd or systemd."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from aigw.daemon.process import RunInfo
from aigw.paths import Paths
from aigw.service import DaemonControl, Host, Runner, ServiceError, ServiceManager, service_manager
from aigw.service.render import make_spec, render_plist, render_unit
from tests.fixtures.daemon import base_env

PY = "/opt/py 3/bin/python3"  # a space on purpose
UID = 501


class FakeLaunchctl:
    """launchctl's statuses: print answers 0 while the job is loaded, 113 when not."""

    def __init__(self, *, unload_polls: int = 0) -> None:
        self.loaded = False
        self.unload_polls = unload_polls  # prints that still see the job after a bootout
        self.unloading = 0
        self.calls: list[list[str]] = []
        self.fail: dict[str, tuple[int, str]] = {}

    def __call__(self, cmd: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(cmd))
        verb = cmd[1]
        if verb in self.fail:
            return self.fail[verb]
        if verb == "print":
            if self.loaded or self.unloading:
                self.unloading = max(0, self.unloading - 1)
                return 0, "gui/501/dev.aigw.daemon = {\n\tstate = running\n\tpid = 77\n}\n"
            return 113, "Could not find service"
        if verb == "bootstrap":
            if self.loaded:
                return 5, "Bootstrap failed: 5: Input/output error"
            self.loaded = True
        if verb == "bootout":
            self.loaded = False
            self.unloading = self.unload_polls
        return 0, ""


class FakeSystemctl:
    """systemctl --user: enable --now / disable --now switch the unit on and off."""

    def __init__(self) -> None:
        self.on = False
        self.calls: list[list[str]] = []
        self.fail: dict[str, tuple[int, str]] = {}

    def __call__(self, cmd: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(cmd))
        assert cmd[:2] == ["systemctl", "--user"]
        verb = cmd[2]
        if verb in self.fail:
            return self.fail[verb]
        if verb == "enable":
            self.on = True
        elif verb == "disable":
            self.on = False
        elif verb in ("is-enabled", "is-active"):
            return (0, "active\n") if self.on else (3, "inactive\n")
        return 0, ""


class Daemon:
    """A stand-in for aigw.daemon: one daemon running (or not) for this AIGW_HOME."""

    def __init__(self, pid: int | None = None) -> None:
        self.info = RunInfo(pid, "http://127.0.0.1:8080") if pid else None
        self.stops = 0

    def control(self) -> DaemonControl:
        def stop() -> RunInfo | None:
            self.stops += 1
            info, self.info = self.info, None
            return info

        return DaemonControl(running=lambda: self.info, stop=stop)


@pytest.fixture
def aigw_home(tmp_path: Path) -> Path:
    return tmp_path / "aigw home"  # a space on purpose


def host(tmp_path: Path, system: str, aigw_home: Path, **env: str) -> Host:
    environ = {"AIGW_HOME": str(aigw_home), "PATH": "/usr/local/bin:/usr/bin:/bin"} | env
    return Host(system=system, home=tmp_path / "user", environ=environ, uid=UID, python=PY, cwd=tmp_path)


def manager(
    tmp_path: Path, system: str, aigw_home: Path, run: Runner, daemon: Daemon | None = None, **env: str
) -> ServiceManager:
    h = host(tmp_path, system, aigw_home, **env)
    paths = Paths.from_env(h.environ)
    control = (daemon or Daemon()).control()
    return service_manager(h, paths, run, control, sleep=lambda s: None)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A tiny systemd unit parser: section -> key -> every value, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# -- rendering


def test_plist_has_the_required_keys(tmp_path: Path, aigw_home: Path) -> None:
    m = manager(tmp_path, "darwin", aigw_home, FakeLaunchctl(), AIGW_CONFIG="conf/aigw.toml")
    result = m.install(dry_run=True)
    assert result.file == tmp_path / "user/Library/LaunchAgents/dev.aigw.daemon.plist"
    plist = plistlib.loads(result.content.encode())
    assert plist["Label"] == "dev.aigw.daemon"
    assert plist["ProgramArguments"] == [PY, "-P", "-m", "aigw", "serve"]
    assert Path(plist["ProgramArguments"][0]).is_absolute()
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProcessType"] == "Interactive"
    assert isinstance(plist["ThrottleInterval"], int) and plist["ThrottleInterval"] >= 1
    log = str(aigw_home / "logs" / "service.log")
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == log
    assert plist["EnvironmentVariables"] == {
        "AIGW_HOME": str(aigw_home),
        "AIGW_CONFIG": str(tmp_path / "conf/aigw.toml"),  # relative: made absolute
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }


def test_relative_paths_become_absolute_and_unset_variables_stay_out(tmp_path: Path) -> None:
    spec = make_spec("venv/bin/python", {"AIGW_HOME": "~/x/../state"}, Path("state/logs"), tmp_path)
    assert spec.python == str(tmp_path / "venv/bin/python")  # absolute, the symlink not resolved
    assert dict(spec.env) == {"AIGW_HOME": str(Path.home() / "state")}
    assert spec.log_file == tmp_path / "state/logs/service.log"
    assert plistlib.loads(render_plist(spec))["EnvironmentVariables"] == dict(spec.env)  # no PATH given
    spec = make_spec(PY, {}, tmp_path / "logs", tmp_path)
    assert spec.env == () and "Environment=" not in render_unit(spec)
    assert "EnvironmentVariables" not in plistlib.loads(render_plist(spec))


def test_control_characters_are_refused(tmp_path: Path, aigw_home: Path) -> None:
    m = manager(tmp_path, "linux", aigw_home, FakeSystemctl(), AIGW_CONFIG="a\nb.toml")
    with pytest.raises(ServiceError, match="control character"):
        m.install()
    assert not m.file.exists()


def test_unit_file_fields_and_quoting(tmp_path: Path) -> None:
    home = tmp_path / 'my "aigw" home 100%'
    environ = {"AIGW_HOME": str(home), "AIGW_CONFIG": "/etc/a\\b.toml"}
    unit = parse_unit(render_unit(make_spec(PY, environ, home / "logs", tmp_path)))
    assert unit["Unit"]["After"] == ["network-online.target"]
    service = unit["Service"]
    assert service["Type"] == ["exec"]
    assert shlex.split(service["ExecStart"][0]) == [PY, "-P", "-m", "aigw", "serve"]
    assert service["Restart"] == ["on-failure"] and service["RestartSec"] == ["2"]
    # systemd unquotes and C-unescapes each assignment, then expands %% to %.
    env = [shlex.split(v)[0].replace("%%", "%") for v in service["Environment"]]
    assert env == [f"AIGW_HOME={home}", "AIGW_CONFIG=/etc/a\\b.toml"]
    log = f"append:{home}/logs/service.log".replace("%", "%%")
    assert service["StandardOutput"] == service["StandardError"] == [log]
    assert unit["Install"]["WantedBy"] == ["default.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.process
def test_systemd_itself_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify parses the file as systemd would and warns about any line it rejects."""
    bindir = tmp_path / "with space" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python").symlink_to(sys.executable)
    home = tmp_path / "aigw home 50%"
    spec = make_spec(
        str(bindir / "python"), {"AIGW_HOME": str(home), "AIGW_CONFIG": "/x/c.toml"}, home, tmp_path
    )
    unit = tmp_path / "aigw.service"
    unit.write_text(render_unit(spec))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert str(unit) not in proc.stderr and "aigw.service:" not in proc.stderr, proc.stderr


# -- install / uninstall / status with fake service managers


def test_systemd_install_twice_then_uninstall_twice(tmp_path: Path, aigw_home: Path) -> None:
    systemctl = FakeSystemctl()
    m = manager(tmp_path, "linux", aigw_home, systemctl)
    assert m.file == tmp_path / "user/.config/systemd/user/aigw.service"
    first = m.install()
    assert not first.updated and first.stopped is None
    content = m.file.read_text()
    assert content == first.content and (m.file.stat().st_mode & 0o777) == 0o644
    assert (aigw_home / "logs").is_dir()  # systemd's append: does not make directories
    expected = [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "reset-failed", "aigw.service"],
        ["systemctl", "--user", "enable", "--now", "aigw.service"],
    ]
    assert systemctl.calls == expected
    systemctl.calls.clear()
    second = m.install()
    assert second.updated and m.file.read_text() == content
    assert systemctl.calls == expected
    assert m.status().as_json() == {
        "platform": "linux",
        "file": str(m.file),
        "installed": True,
        "enabled": True,
        "active": True,
        "log": str(aigw_home / "logs/service.log"),
    }
    systemctl.calls.clear()
    assert m.uninstall() is True
    assert systemctl.calls == [
        ["systemctl", "--user", "disable", "--now", "aigw.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]
    assert not m.file.exists()
    systemctl.calls.clear()
    assert m.uninstall() is False and systemctl.calls == []
    st = m.status()
    assert (st.installed, st.enabled, st.active) == (False, False, False)


def test_xdg_config_home_is_respected(tmp_path: Path, aigw_home: Path) -> None:
    m = manager(tmp_path, "linux", aigw_home, FakeSystemctl(), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert m.file == tmp_path / "xdg/systemd/user/aigw.service"
    m = manager(tmp_path, "linux", aigw_home, FakeSystemctl(), XDG_CONFIG_HOME="relative")  # invalid: ignored
    assert m.file == tmp_path / "user/.config/systemd/user/aigw.service"


def test_launchd_install_twice_then_uninstall_twice(tmp_path: Path, aigw_home: Path) -> None:
    launchctl = FakeLaunchctl(unload_polls=2)
    m = manager(tmp_path, "darwin", aigw_home, launchctl)
    target = "gui/501/dev.aigw.daemon"
    first = m.install()
    assert not first.updated
    assert launchctl.calls == [
        ["launchctl", "print", target],
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", "gui/501", str(m.file)],
    ]
    content = m.file.read_bytes()
    launchctl.calls.clear()
    second = m.install()
    assert second.updated and m.file.read_bytes() == content
    # loaded: booted out, and bootstrap waits until launchd has let go of the old job
    assert launchctl.calls == [
        ["launchctl", "print", target],
        ["launchctl", "bootout", target],
        ["launchctl", "print", target],
        ["launchctl", "print", target],
        ["launchctl", "print", target],
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", "gui/501", str(m.file)],
    ]
    st = m.status()
    assert (st.platform, st.installed, st.enabled, st.active) == ("macos", True, True, True)
    launchctl.calls.clear()
    assert m.uninstall() is True
    assert launchctl.calls == [
        ["launchctl", "print", target],
        ["launchctl", "bootout", target],
        *3 * [["launchctl", "print", target]],
    ]
    assert not m.file.exists() and not launchctl.loaded
    assert m.uninstall() is False
    st = m.status()
    assert (st.installed, st.enabled, st.active) == (False, False, False)


def test_a_running_daemon_is_stopped_before_the_service_starts(tmp_path: Path, aigw_home: Path) -> None:
    order: list[str] = []
    systemctl = FakeSystemctl()

    def run(cmd: Sequence[str]) -> tuple[int, str]:
        order.append(cmd[2])
        return systemctl(cmd)

    daemon = Daemon(pid=4242)
    m = manager(tmp_path, "linux", aigw_home, run, daemon)
    dry = m.install(dry_run=True)
    assert dry.stopped is not None and dry.stopped.pid == 4242 and daemon.stops == 0 and order == []
    assert not m.file.exists()

    control = daemon.control()

    def stop() -> RunInfo | None:
        order.append("stop aigw")
        return control.stop()

    m = service_manager(m.host, m.paths, run, DaemonControl(control.running, stop), sleep=lambda s: None)
    result = m.install()
    assert result.stopped is not None and result.stopped.pid == 4242
    assert order == ["daemon-reload", "stop aigw", "reset-failed", "enable"]


@pytest.mark.parametrize("system", ["linux", "darwin"])
def test_missing_tool_is_one_clear_line_and_the_file_stays(
    tmp_path: Path, aigw_home: Path, system: str
) -> None:
    def run(cmd: Sequence[str]) -> tuple[int, str]:
        return 127, f"{cmd[0]}: command not found"

    m = manager(tmp_path, system, aigw_home, run)
    with pytest.raises(ServiceError) as e:
        m.install()
    tool = "launchctl" if system == "darwin" else "systemctl"
    assert e.value.message.startswith(f"{tool} not found; {m.file} is written")
    assert "aigw start" in e.value.message and "\n" not in e.value.message
    assert m.file.exists()
    st = m.status()
    assert (st.installed, st.enabled, st.active) == (True, None, None)


def test_systemctl_failing_keeps_the_file_and_says_how_to_start(tmp_path: Path, aigw_home: Path) -> None:
    systemctl = FakeSystemctl()
    systemctl.fail["daemon-reload"] = (1, "Failed to connect to bus: No medium found\nmore detail\n")
    daemon = Daemon(pid=99)
    m = manager(tmp_path, "linux", aigw_home, systemctl, daemon)
    with pytest.raises(ServiceError) as e:
        m.install()
    assert e.value.message == (
        "`systemctl --user daemon-reload` failed (exit 1: Failed to connect to bus: No medium found); "
        f"{m.file} is written: run `aigw start` now, or `systemctl --user enable --now aigw.service` "
        "in a session with a systemd user manager"
    )
    assert m.file.exists() and daemon.stops == 0  # nothing was stopped for a service that cannot start
    # a failure after the running daemon was stopped says so
    systemctl.fail = {"enable": (1, "")}
    with pytest.raises(ServiceError, match=r"exit 1\); .* \(the aigw that ran, pid 99, was stopped\)$"):
        m.install()
    # uninstall that cannot reach systemd removes nothing
    systemctl.fail = {"disable": (1, "Failed to connect to bus")}
    with pytest.raises(
        ServiceError,
        match=r"is left in place \(delete it by hand if no systemd user manager runs here\)$",
    ):
        m.uninstall()
    assert m.file.exists()


def test_launchd_bootstrap_failure(tmp_path: Path, aigw_home: Path) -> None:
    launchctl = FakeLaunchctl()
    launchctl.fail["bootstrap"] = (125, "Bootstrap failed: 125: Domain does not support specified action")
    m = manager(tmp_path, "darwin", aigw_home, launchctl)
    with pytest.raises(ServiceError) as e:
        m.install()
    assert e.value.message.startswith("`launchctl bootstrap gui/501 ")
    assert f"`launchctl bootstrap gui/501 {shlex.quote(str(m.file))}`, or run `aigw start`" in e.value.message
    assert m.file.exists()


def test_other_platforms_are_refused(tmp_path: Path, aigw_home: Path) -> None:
    with pytest.raises(ServiceError, match=r"supports macOS \(launchd\) and Linux \(systemd\), not win32"):
        manager(tmp_path, "win32", aigw_home, FakeSystemctl())


# -- the CLI, end to end on Linux with a fake systemctl on PATH

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
if [ -n "$FAKE_FAIL" ]; then echo "Failed to connect to bus: No medium found" >&2; exit 1; fi
case "$*" in
  *"disable --now"*) rm -f "$FAKE_LOG.on" ;;
  *"enable --now"*) : > "$FAKE_LOG.on" ;;
  *is-enabled*|*is-active*) if [ -e "$FAKE_LOG.on" ]; then echo active; exit 0; fi; echo inactive; exit 3 ;;
esac
exit 0
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the systemd path")
@pytest.mark.process
def test_cli_end_to_end_with_a_fake_systemctl(tmp_path: Path) -> None:
    bindir, user, home = tmp_path / "bin", tmp_path / "user", tmp_path / "aigw home"
    bindir.mkdir()
    user.mkdir()
    (bindir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bindir / "systemctl").chmod(0o755)
    log = tmp_path / "systemctl.log"
    env = base_env(home) | {"HOME": str(user), "PATH": f"{bindir}:/usr/bin:/bin", "FAKE_LOG": str(log)}
    env.pop("XDG_CONFIG_HOME", None)

    def aigw(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aigw", "service", *args],
            env=env | extra,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    unit = user / ".config/systemd/user/aigw.service"
    dry = aigw("install", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would write {unit}" in dry.stdout and "ExecStart=" in dry.stdout
    assert "systemctl --user enable --now aigw.service" in dry.stdout
    assert not unit.exists() and not log.exists()

    first = aigw("install")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"aigw service installed: {unit}")
    assert f"ExecStart={sys.executable} -P -m aigw serve" in unit.read_text()
    assert f'Environment="AIGW_HOME={home}"' in unit.read_text()
    second = aigw("install")
    assert second.returncode == 0 and "already installed; updated" in second.stdout
    assert log.read_text().splitlines() == 2 * [
        "--user daemon-reload",
        "--user reset-failed aigw.service",
        "--user enable --now aigw.service",
    ]

    st = aigw("status", "--json")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout) == {
        "platform": "linux",
        "file": str(unit),
        "installed": True,
        "enabled": True,
        "active": True,
        "log": str(home / "logs/service.log"),
    }
    text = aigw("status")
    assert "installed" in text.stdout and "active: yes" in text.stdout

    failed = aigw("install", FAKE_FAIL="1")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith(
        "aigw: `systemctl --user daemon-reload` "
    )
    assert "Failed to connect to bus" in failed.stderr and unit.exists()

    missing = aigw("install", PATH=str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and missing.stderr.startswith("aigw: systemctl not found; ")
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr

    gone = aigw("uninstall")
    assert gone.returncode == 0 and f"removed {unit}" in gone.stdout and not unit.exists()
    again = aigw("uninstall")
    assert again.returncode == 0 and "not installed" in again.stdout
    st = aigw("status", "--json")
    assert json.loads(st.stdout)["installed"] is False and json.loads(st.stdout)["active"] is False
    assert os.listdir(user) == [".config"]  # nothing else was written to the fake home


def test_an_unwritable_place_is_one_line(tmp_path: Path, aigw_home: Path) -> None:
    m = manager(tmp_path, "linux", aigw_home, FakeSystemctl())
    m.file.parent.parent.parent.mkdir(parents=True)
    m.file.parent.parent.write_text("a file where a directory should be")
    with pytest.raises(ServiceError, match=r"^cannot write .*/systemd/user: Not a directory$"):
        m.install()
