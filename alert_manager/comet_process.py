"""Build and run the Comet VOEvent broker with the PyROS handler plugin.

``python -m alert_manager.comet_process`` (the Procfile's ``comet`` line) replaces itself with::

    twistd --nodaemon --pidfile= --logfile=- comet --receive --receive-port=PORT
        --local-ivo=ivo://pyros/broker --author-whitelist=127.0.0.1/32 --eventdb=var/comet-eventdb
        --pyros [--pyros-mode=timestamp] [--remote=HOST:PORT ...] [--save-event ...]

Flags are those of Comet 3.1.0's ``twistd comet --help`` (its online docs describe an unreleased
version). Comet 3.1.0 cannot bind an interface: the receive port listens on 0.0.0.0 and the author
whitelist is the only gate, hence the loopback-only default.

Environment (defaults in brackets):

- ``PYROS_COMET_PORT`` [8098]: receive port for authors (VTP).
- ``PYROS_COMET_LOCAL_IVO`` [ivo://pyros/broker].
- ``PYROS_COMET_AUTHOR_WHITELIST`` [127.0.0.1/32]: comma-separated networks allowed to submit.
- ``PYROS_COMET_REMOTES`` [none]: comma-separated HOST:PORT brokers to subscribe to (e.g. GCN).
- ``PYROS_COMET_EVENTDB`` [$PYROS_VAR_DIR/comet-eventdb, var/comet-eventdb]: Comet's duplicate-detection database (SQLite files through
  ``comet_plugins/anydbm.py``, which Comet imports before ``dbm``: ``dbm.dumb`` slows down with every packet).
- ``PYROS_COMET_SAVE_EVENTS`` [unset]: a directory where Comet also writes each packet.
- ``PYROS_COMET_PLUGIN_MODE`` [spool]: ``spool`` (files + the intake daemon), ``intake`` (in Comet) or ``timestamp``.
- ``PYROS_COMET_TIMESTAMP_FILE`` [var/comet-receive-times.log]: used in timestamp mode.
- ``PYROS_COMET_INTAKE`` [alert_manager.intake:receive_packet]: function given the raw bytes.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = Path(__file__).resolve().parent / "comet_plugins"

DEFAULT_PORT = 8098
DEFAULT_LOCAL_IVO = "ivo://pyros/broker"
DEFAULT_WHITELIST = ("127.0.0.1/32",)
DEFAULT_EVENTDB = "var/comet-eventdb"


@dataclass(frozen=True)
class CometConfig:
    receive_port: int = DEFAULT_PORT
    local_ivo: str = DEFAULT_LOCAL_IVO
    author_whitelist: tuple[str, ...] = DEFAULT_WHITELIST
    eventdb_dir: Path = field(default_factory=lambda: REPO_ROOT / DEFAULT_EVENTDB)
    remotes: tuple[str, ...] = ()
    save_event_dir: Path | None = None
    plugin_mode: str = "spool"
    timestamp_file: Path | None = None
    intake: str | None = None
    verbose: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CometConfig:
        env = os.environ if env is None else env
        port_text = env.get("PYROS_COMET_PORT", str(DEFAULT_PORT))
        try:
            port = int(port_text)
        except ValueError as exc:
            raise SystemExit(f"PYROS_COMET_PORT must be an integer, not {port_text!r}") from exc
        remotes = tuple(r.strip() for r in env.get("PYROS_COMET_REMOTES", "").split(",") if r.strip())
        for remote in remotes:
            host, _, rport = remote.rpartition(":")
            if not host or not rport.isdigit():
                raise SystemExit(f"PYROS_COMET_REMOTES entry {remote!r} is not HOST:PORT")
        whitelist = tuple(
            w.strip() for w in env.get("PYROS_COMET_AUTHOR_WHITELIST", ",".join(DEFAULT_WHITELIST)).split(",")
        )
        save = env.get("PYROS_COMET_SAVE_EVENTS")
        ts_file = env.get("PYROS_COMET_TIMESTAMP_FILE")
        return cls(
            receive_port=port,
            local_ivo=env.get("PYROS_COMET_LOCAL_IVO", DEFAULT_LOCAL_IVO),
            author_whitelist=tuple(w for w in whitelist if w),
            # beside PyROS's other state (PYROS_VAR_DIR, var/ by default), unless named
            eventdb_dir=_resolve(env.get("PYROS_COMET_EVENTDB")
                                 or str(Path(env.get("PYROS_VAR_DIR") or "var") / "comet-eventdb")),
            remotes=remotes,
            save_event_dir=_resolve(save) if save else None,
            plugin_mode=env.get("PYROS_COMET_PLUGIN_MODE", "spool"),
            timestamp_file=_resolve(ts_file) if ts_file else None,
            intake=env.get("PYROS_COMET_INTAKE") or None,
        )


def _resolve(path_text: str) -> Path:
    path = Path(path_text)
    return path if path.is_absolute() else REPO_ROOT / path


def twistd_executable() -> str:
    """The ``twistd`` of this interpreter's environment (the venv), not whatever is first on PATH."""
    candidate = Path(sys.executable).with_name("twistd")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("twistd")
    if found is None:
        raise SystemExit("twistd not found: install Twisted/Comet in this environment")
    return found


def comet_command(config: CometConfig, twistd: str | None = None) -> list[str]:
    argv = [
        twistd or twistd_executable(),
        "--nodaemon",
        "--pidfile=",  # no pid file: the process manager (honcho/systemd) tracks the process
        "--logfile=-",
        "comet",
        "--receive",
        f"--receive-port={config.receive_port}",
        f"--local-ivo={config.local_ivo}",
        f"--eventdb={config.eventdb_dir}",
        "--pyros",
        f"--pyros-mode={config.plugin_mode}",
    ]
    argv += [f"--author-whitelist={network}" for network in config.author_whitelist]
    if config.timestamp_file is not None:
        argv.append(f"--pyros-timestamp-file={config.timestamp_file}")
    if config.intake:
        argv.append(f"--pyros-intake={config.intake}")
    argv += [f"--remote={remote}" for remote in config.remotes]
    if config.save_event_dir is not None:
        argv += ["--save-event", f"--save-event-directory={config.save_event_dir}"]
    if config.verbose:
        argv.append("--verbose")
    return argv


def comet_environment(base: Mapping[str, str] | None = None, extra_paths: Sequence[Path] = ()) -> dict[str, str]:
    """The environment for Comet: the plugin folder (for ``comet/plugins/pyros_handler.py``) and the
    repository root (for ``alert_manager.intake``) on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    paths = [str(PLUGIN_DIR), str(REPO_ROOT), *map(str, extra_paths)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def prepare_directories(config: CometConfig) -> None:
    config.eventdb_dir.mkdir(parents=True, exist_ok=True)
    if config.save_event_dir is not None:
        config.save_event_dir.mkdir(parents=True, exist_ok=True)
    if config.timestamp_file is not None:
        config.timestamp_file.parent.mkdir(parents=True, exist_ok=True)


def main() -> None:
    config = CometConfig.from_env()
    prepare_directories(config)
    argv = comet_command(config)
    print("starting Comet:", " ".join(argv), flush=True)
    # exec: the process manager's signals (SIGTERM/SIGINT) reach twistd directly.
    os.execve(argv[0], argv, comet_environment())


if __name__ == "__main__":
    main()
