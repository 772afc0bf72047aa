"""External scripts: a procedure (or one step of one) that is a program run as a subprocess.

The contract with the script (README, "Script procedures"):

- **Command**: ``*.py`` runs with the worker's own Python (unbuffered, so lines arrive as they are printed);
  any other file must be executable (``#!`` line or a binary). One argument ``--name=value`` per validated
  parameter: strings as they are, every other value as JSON (``--exposure_s=2.5``, ``--dry_run=true``,
  ``--filters=["R", "V"]``), then the caller's extra arguments.
- **Environment**: a clean one, not the worker's (no database URL, no secret key): ``PATH``, ``HOME``,
  ``LANG``, ``TZ=UTC``, ``PYTHONPATH`` (the repository, for ``procedures.script_client``),
  ``PYTHONUNBUFFERED=1``, ``PYROS_PARAMS`` (the parameters as one JSON object), ``PYROS_PUBLISH_FD``,
  ``PYROS_URL`` / ``PYROS_TOKEN`` (the REST API, as the operator who queued the item), ``PYROS_ITEM``,
  ``PYROS_PROCEDURE``, ``PYROS_RUN_DIR`` (its working directory), ``PYROS_DATA_DIR``, plus what the caller
  adds.
- **Process**: its own session and process group, its own working directory; tied to the worker process
  (``setpriv --pdeathsig KILL``): a worker killed at its timeout takes the script with it.
- **Output**: every stdout and stderr line goes to the item's log as it comes.
- **Published data**: JSON objects, one per line, written to the file descriptor ``PYROS_PUBLISH_FD``
  (``procedures.script_client.publish(**data)`` does it; from any POSIX shell: ``echo '{"free_gb": 12}'
  > /dev/fd/$PYROS_PUBLISH_FD``: dash cannot write ``>&N`` to a descriptor above 9). Each object is merged
  into the item's published data at once; the key ``"$progress"`` (``{"current": 3, "total": 10,
  "message": "..."}``) sets the item's progress instead.
- **Stop**: an abort (or the timeout) sends SIGINT to the whole process group, then SIGKILL ``grace_s``
  later (1 s by default) if anything is still running. When the script itself ends, whatever it left
  running in its process group is killed.

``ScriptRun`` is the mechanism (no Django); ``context_script`` ties it to a running procedure's ``ctx``
(log, publish, progress, abort); ``script_procedure`` is what the loader's generated module for a script
file calls."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from procedures.sdk import ProcedureError

log = logging.getLogger("pyros.procedures")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GRACE_S = 1.0
PROGRESS_KEY = "$progress"
MAX_LINE_BYTES = 64 * 1024  # a longer line without a newline is cut into pieces of this size
MAX_PUBLISH_LINE_BYTES = 1024 * 1024
DRAIN_AFTER_EXIT_S = 1.0  # output still buffered in the pipes once the process has ended
SETPRIV = shutil.which("setpriv")


@dataclass
class ScriptResult:
    """How a script ended. ``outcome``: "succeeded" (exit status 0), "failed" (another status or a signal),
    "aborted" (stopped by an abort) or "timeout"; ``exit_status`` is the process's return code (negative:
    killed by that signal), ``stopped_with`` the last signal PyROS sent ("SIGINT", "SIGKILL" or "")."""

    name: str
    outcome: str
    exit_status: int | None
    signal: str | None
    duration_s: float
    published: dict = field(default_factory=dict)
    stopped_with: str = ""
    last_stderr: str = ""

    def summary(self) -> dict:
        """The JSON record kept in the item's published data (without the data itself)."""
        return {"outcome": self.outcome, "exit_status": self.exit_status, "signal": self.signal,
                "duration_s": round(self.duration_s, 3), "stopped_with": self.stopped_with}

    def explain(self) -> str:
        if self.outcome == "succeeded":
            return f"script {self.name} succeeded in {self.duration_s:.1f} s"
        if self.outcome == "timeout":
            how = "killed (it ignored SIGINT)" if self.stopped_with == "SIGKILL" else "interrupted with SIGINT"
            return f"script {self.name} passed its timeout and was {how}"
        if self.outcome == "aborted":
            return f"script {self.name} aborted ({self.stopped_with or 'ended'})"
        how = f"was killed by {self.signal}" if self.signal else f"exited with status {self.exit_status}"
        return f"script {self.name} {how}" + (f"; last line on stderr: {self.last_stderr}" if self.last_stderr else "")


class ScriptRun:
    """One script process: start it, read its output and published data, stop it. Thread-safe.

    ``on_line(stream, text)`` gets each stdout/stderr line ("stdout"/"stderr"), ``on_publish(data)`` each
    published object, ``on_progress(current, total, message)`` each progress report; they run in the run's
    own I/O thread. The run stops itself (SIGINT, then SIGKILL after ``grace_s``) when one of ``stop_events``
    is set or after ``timeout_s``."""

    def __init__(self, argv: list[str], *, name: str, cwd: str | Path, env: dict[str, str],
                 timeout_s: float | None = None, grace_s: float = DEFAULT_GRACE_S,
                 on_line: Callable[[str, str], None] | None = None,
                 on_publish: Callable[[dict], None] | None = None,
                 on_progress: Callable[[float, float | None, str], None] | None = None,
                 stop_events: Iterable[threading.Event] = ()) -> None:
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if not grace_s >= 0:
            raise ValueError("grace_s must be 0 or more")
        self.argv, self.name, self.cwd, self.env = list(argv), name, Path(cwd), dict(env)
        self.timeout_s, self.grace_s = timeout_s, grace_s
        self.on_line, self.on_publish, self.on_progress = on_line, on_publish, on_progress
        self.stop_events = tuple(stop_events)
        self.proc: subprocess.Popen | None = None
        self.published: dict = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stop_request: str = ""  # "aborted" or "timeout", set by stop() or the I/O thread
        self._stopped_with = ""
        self._last_stderr = ""
        self._started = 0.0
        self._result: ScriptResult | None = None

    # --- life cycle ---------------------------------------------------------------------------------
    def start(self) -> ScriptRun:
        read_fd, write_fd = os.pipe()
        env = {**self.env, "PYROS_PUBLISH_FD": str(write_fd)}
        argv = ([SETPRIV, "--pdeathsig", "KILL", "--"] if SETPRIV else []) + self.argv
        try:
            self.proc = _spawn(argv, cwd=str(self.cwd), env=env, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds the only write end: end of file when it (and its group) ends
        self._started = time.monotonic()
        threading.Thread(target=self._io_loop, args=(read_fd,), name=f"pyros-script-{self.proc.pid}",
                         daemon=True).start()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and not self._done.is_set()

    def status(self) -> dict:
        """What a caller polls while the script runs: running, pid, seconds so far, the data published so far."""
        with self._lock:
            published = dict(self.published)
        return {"name": self.name, "running": self.running(), "pid": self.pid, "published": published,
                "elapsed_s": round(time.monotonic() - self._started, 3) if self._started else 0.0,
                "result": self._result.summary() if self._result else None}

    def stop(self, reason: str = "aborted") -> None:
        """Ask the run to stop (SIGINT now, SIGKILL ``grace_s`` later); returns at once (``wait`` to see it end)."""
        with self._lock:
            if not self._stop_request:
                self._stop_request = reason

    def wait(self, timeout_s: float | None = None) -> ScriptResult:
        """Block until the script has ended (and its output is read); TimeoutError if ``timeout_s`` passes
        first (the script goes on)."""
        if self.proc is None:
            raise RuntimeError("the script was not started")
        if not self._done.wait(timeout_s):
            raise TimeoutError(f"script {self.name} still running after {timeout_s} s")
        return self._result

    # --- the run's I/O thread: output, published data, timeout and stop ------------------------------
    def _io_loop(self, publish_fd: int) -> None:
        proc = self.proc
        sel = selectors.DefaultSelector()
        buffers: dict[str, bytearray] = {}
        for stream, fd in (("stdout", proc.stdout.fileno()), ("stderr", proc.stderr.fileno()),
                           ("publish", publish_fd)):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, stream)
            buffers[stream] = bytearray()
        deadline = None if self.timeout_s is None else self._started + self.timeout_s
        interrupted_at = None
        exited_at = None
        try:
            while True:
                if sel.get_map():
                    for key, _ in sel.select(timeout=0.02):
                        self._read(key.fd, key.data, buffers, sel)
                else:  # it closed its pipes but may still run
                    time.sleep(0.02)
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                    self._signal_group(signal.SIGKILL, record=False)  # what it left behind in its group
                if exited_at is not None:
                    if not sel.get_map() or now - exited_at > DRAIN_AFTER_EXIT_S:
                        break  # all read (or something outside its group holds a pipe open)
                    continue
                with self._lock:
                    if not self._stop_request:
                        if any(e.is_set() for e in self.stop_events):
                            self._stop_request = "aborted"
                        elif deadline is not None and now >= deadline:
                            self._stop_request = "timeout"
                    stopping = bool(self._stop_request)
                if stopping and interrupted_at is None:
                    interrupted_at = now
                    self._signal_group(signal.SIGINT)
                elif stopping and now - interrupted_at >= self.grace_s and self._stopped_with != "SIGKILL":
                    self._signal_group(signal.SIGKILL)
        except Exception:  # noqa: BLE001 - a callback's bug must not leave the process unsupervised
            log.exception("script %s: supervision failed; killing it", self.name)
            self._signal_group(signal.SIGKILL)
        finally:
            for stream in ("stdout", "stderr", "publish"):
                if buffers[stream]:
                    self._emit(stream, bytes(buffers[stream]))
            sel.close()
            os.close(publish_fd)
            proc.stdout.close()
            proc.stderr.close()
            if proc.poll() is None:  # the I/O thread failed: never leave a process behind
                self._signal_group(signal.SIGKILL)
            code = proc.wait()
            self._result = self._make_result(code)
            self._done.set()

    def _read(self, fd: int, stream: str, buffers: dict[str, bytearray], sel) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            sel.unregister(fd)
            return
        buf = buffers[stream]
        buf.extend(chunk)
        limit = MAX_PUBLISH_LINE_BYTES if stream == "publish" else MAX_LINE_BYTES
        while True:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) >= limit:
                    end = limit - 1
                else:
                    break
            line = bytes(buf[:end + 1])
            del buf[:end + 1]
            self._emit(stream, line)

    def _emit(self, stream: str, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if stream == "publish":
            self._published_line(text)
            return
        if stream == "stderr" and text.strip():
            self._last_stderr = text.strip()[:300]
        if self.on_line:
            self.on_line(stream, text)

    def _published_line(self, text: str) -> None:
        if not text.strip():
            return
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if self.on_line:
                self.on_line("stderr", f"ignored on PYROS_PUBLISH_FD (not a JSON object): {text[:200]}")
            return
        progress = data.pop(PROGRESS_KEY, None)
        if isinstance(progress, dict) and self.on_progress:
            try:
                self.on_progress(float(progress.get("current", 0)),
                                 None if progress.get("total") is None else float(progress["total"]),
                                 str(progress.get("message", "")))
            except (TypeError, ValueError):
                pass
        if data:
            with self._lock:
                self.published.update(data)
            if self.on_publish:
                self.on_publish(data)

    def _signal_group(self, sig: signal.Signals, *, record: bool = True) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # its own session: the group id is its pid
        except (ProcessLookupError, PermissionError):
            return
        if record:
            self._stopped_with = sig.name

    def _make_result(self, code: int) -> ScriptResult:
        with self._lock:
            reason, published = self._stop_request, dict(self.published)
        sig = signal.Signals(-code).name if code < 0 and -code in signal.valid_signals() else None
        if reason in ("aborted", "timeout") and self._stopped_with:
            outcome = reason
        else:
            outcome = "succeeded" if code == 0 else "failed"
        return ScriptResult(name=self.name, outcome=outcome, exit_status=code, signal=sig,
                            duration_s=time.monotonic() - self._started, published=published,
                            stopped_with=self._stopped_with, last_stderr=self._last_stderr)


# --- Process creation, from one long-lived thread ---------------------------------------------------
# The parent-death signal fires when the *thread* that created the child ends: scripts are started by one
# thread that lives as long as the worker, so a script started from a short-lived step thread is not
# killed when that thread ends, and is killed when the worker dies.
_spawn_requests: list = []
_spawn_cond = threading.Condition()
_spawner: threading.Thread | None = None


def _spawner_loop() -> None:
    while True:
        with _spawn_cond:
            while not _spawn_requests:
                _spawn_cond.wait()
            kwargs, box, ready = _spawn_requests.pop(0)
        try:
            box.append(subprocess.Popen(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True, close_fds=True, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.append(exc)
        ready.set()


def _spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    global _spawner
    box: list = []
    ready = threading.Event()
    with _spawn_cond:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_spawner_loop, name="pyros-script-spawner", daemon=True)
            _spawner.start()
        _spawn_requests.append(({"args": argv, **kwargs}, box, ready))
        _spawn_cond.notify()
    ready.wait()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


# --- Commands and environment -----------------------------------------------------------------------
def script_arguments(params: dict | None) -> list[str]:
    """``--name=value`` per parameter: strings as they are, other values as JSON."""
    out = []
    for key, value in (params or {}).items():
        out.append(f"--{key}={value if isinstance(value, str) else json.dumps(value)}")
    return out


def script_command(path: Path, params: dict | None = None, args: Iterable[str] = ()) -> list[str]:
    """The command line of a script: this Python for ``*.py``, the file itself otherwise (executable)."""
    path = Path(path)
    if not path.is_file():
        raise ProcedureError(f"script {path} does not exist")
    if path.suffix == ".py":
        head = [sys.executable, "-u", str(path)]
    elif os.access(path, os.X_OK):
        head = [str(path)]
    else:
        raise ProcedureError(f"script {path} is not executable (chmod +x it, or name it *.py)")
    return head + script_arguments(params) + [str(a) for a in args]


def base_environment() -> dict[str, str]:
    """What every script gets from the worker's environment (nothing secret)."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "LANG": os.environ.get("LANG", "C.UTF-8"), "TZ": "UTC", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(REPO)}
    for key in ("LC_ALL", "TMPDIR", "USER", "LOGNAME"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- A script run by a procedure (ctx) ---------------------------------------------------------------
def scripts_dir() -> Path:
    from django.conf import settings

    return Path(settings.PYROS_PROCEDURES_DIR) / "scripts"


def resolve_script(path: str | Path) -> Path:
    """An absolute path, or a path relative to the procedures folder's ``scripts/``."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = scripts_dir() / candidate
    if not candidate.is_file():
        raise ProcedureError(f"script {path} not found (looked for {candidate})")
    return candidate.resolve()


def api_credentials(item_uid: str) -> tuple[str, str, str]:
    """(PYROS_URL, PYROS_TOKEN, why): the REST API token of the operator who queued the item (their own
    DRF token, the one ``manage.py create_api_token`` prints; created on first use) when that account is a
    validated, active operator; no token otherwise (the script can then read only public endpoints)."""
    from django.conf import settings
    from rest_framework.authtoken.models import Token

    from procedures.models import QueueItem
    from pyrosapp.models import User
    from user_manager.roles import is_operator

    url = str(settings.PYROS_SITE_URL).rstrip("/")
    added_by = QueueItem.objects.filter(uid=item_uid).values_list("added_by", flat=True).first() or ""
    user = User.objects.filter(email__iexact=added_by).first() if added_by else None
    if user is None:
        return url, "", f"no token: the item was queued by {added_by or 'nobody known'!r}, not an account"
    if not is_operator(user):
        return url, "", f"no token: {added_by} is not a validated, active operator"
    token, _ = Token.objects.get_or_create(user=user)
    return url, token.key, f"token of {added_by}"


def run_directory(item_uid: str) -> Path:
    """The working directory of an item's scripts: ``PYROS_VAR_DIR/procedure-runs/<item uid>/`` (kept)."""
    from django.conf import settings

    path = Path(settings.VAR_DIR) / "procedure-runs" / str(item_uid)
    path.mkdir(parents=True, exist_ok=True)
    return path


class ContextScript:
    """A script started by ``ctx.script(..., wait=False)``: ``status()`` while it runs, ``wait()`` for its
    result (recorded in the item's published data, checked like ``ctx.script``), ``stop()`` to interrupt it."""

    def __init__(self, ctx, run: ScriptRun, *, check: bool, publish_as: str | None) -> None:
        self.ctx, self.run, self.check, self.publish_as = ctx, run, check, publish_as
        self._recorded = False

    @property
    def name(self) -> str:
        return self.run.name

    def status(self) -> dict:
        return self.run.status()

    def stop(self) -> ScriptResult:
        self.run.stop("aborted")
        return self.wait()

    def wait(self, timeout_s: float | None = None) -> ScriptResult:
        result = self.run.wait(timeout_s)
        if not self._recorded:
            self._recorded = True
            with _records_lock:
                record = _script_records.setdefault(self.ctx, {})
                record[self.run.name] = result.summary()
                record = dict(record)
            self.ctx.publish(scripts=record)
            level = logging.INFO if result.outcome == "succeeded" else logging.WARNING
            # The exit status once: 'exited with status 1' says it already, a signal is named, not '-2'.
            text = result.explain()
            if result.exit_status is not None and result.exit_status >= 0 and "status" not in text:
                text += f" (exit status {result.exit_status})"
            self.ctx.log.log(level, "%s", text)
        if result.outcome == "aborted":
            self.ctx.check()  # the procedure's abort: ProcedureAborted, like any device call
        if self.check and result.outcome != "succeeded":
            raise ProcedureError(result.explain())
        return result


# The exit records of the scripts each context (a procedure's, or a flow step's) ran: its ``scripts`` entry.
_script_records: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_records_lock = threading.Lock()


def _item_line(ctx, level: int, text: str) -> None:
    """A script's output line into the item's log only (the handlers of the procedure's logger): a chatty
    script must not flood PyROS's own log table. ``ctx.log`` may be a LoggerAdapter (a flow step's)."""
    adapter = ctx.log
    logger = getattr(adapter, "logger", adapter)
    if isinstance(adapter, logging.LoggerAdapter):
        text, _ = adapter.process(text, {})
    if not logger.handlers:
        logger.log(level, "%s", text)
        return
    record = logger.makeRecord(logger.name, level, "(script)", 0, "%s", (text,), None)
    for handler in logger.handlers:
        if record.levelno >= handler.level:
            handler.handle(record)


def context_script(ctx, path: str | Path, params: dict | None = None, *, args: Iterable[str] = (),
                   env: dict | None = None, cwd: str | Path | None = None, timeout_s: float | None = None,
                   grace_s: float = DEFAULT_GRACE_S, wait: bool = True, check: bool = True,
                   publish_as: str | None = None):
    """``ctx.script``: run a script for the running procedure (see the module docstring for its contract).

    Its stdout/stderr lines go to the item's log; what it publishes is merged into the item's published
    data (under ``publish_as`` when given), its progress reports set the item's progress; an abort of the
    item stops it (SIGINT, SIGKILL ``grace_s`` later), and so does ``timeout_s``. The item's published data
    keeps ``scripts: {name: {outcome, exit_status, signal, duration_s, stopped_with}}``.
    ``wait=True`` returns the ``ScriptResult`` (``check=True``: raises ProcedureError unless it succeeded,
    ProcedureAborted on an abort); ``wait=False`` returns a ``ContextScript`` handle."""
    from django.conf import settings

    script = resolve_script(path)
    params = dict(params or {})
    json.dumps(params)  # parameters travel as JSON: refuse what cannot
    url, token, why = api_credentials(ctx.item_uid)
    directory = Path(cwd) if cwd else run_directory(ctx.item_uid)
    full_env = {**base_environment(), "PYROS_PARAMS": json.dumps(params), "PYROS_URL": url, "PYROS_TOKEN": token,
                "PYROS_ITEM": str(ctx.item_uid), "PYROS_PROCEDURE": str(ctx.procedure),
                "PYROS_RUN_DIR": str(directory), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR),
                **{str(k): str(v) for k, v in (env or {}).items()}}
    name = script.name
    published_key = publish_as

    merged: dict = {}

    def on_publish(data: dict) -> None:
        if published_key:
            merged.update(data)
            ctx.publish(**{published_key: dict(merged)})
        else:
            ctx.publish(**data)

    def on_line(stream: str, text: str) -> None:
        _item_line(ctx, logging.INFO if stream == "stdout" else logging.WARNING, f"{name}> {text}")

    control = ctx.control
    ctx.check()
    run = ScriptRun(script_command(script, params, args), name=name, cwd=directory, env=full_env,
                    timeout_s=timeout_s, grace_s=grace_s, on_line=on_line, on_publish=on_publish,
                    on_progress=lambda current, total, message: ctx.set_progress(current, total, message),
                    stop_events=(control.aborted, control.finished))
    run.start()
    ctx.log.info("script %s started (pid %s, %s)%s", name, run.pid, why,
                 f", timeout {timeout_s:g} s" if timeout_s else "")
    handle = ContextScript(ctx, run, check=check, publish_as=publish_as)
    return handle.wait() if wait else handle


def script_procedure(path: str, *, sha256: str, timeout_s: float | None, grace_s: float = DEFAULT_GRACE_S):
    """The procedure function of a script file (the loader's generated module calls this): it runs exactly
    the file that was validated at the last reload (its SHA-256), with the item's parameters; the item
    fails unless the script exits 0. Returns the script's exit record (the item's ``result``)."""

    def run(ctx, **params):
        script = Path(path)
        if not script.is_file():
            raise ProcedureError(f"script {path} is gone since the last reload (reload the procedures)")
        if file_sha256(script) != sha256:
            raise ProcedureError(f"script {script.name} changed since the last reload: reload the procedures "
                                 "to validate and run the new version")
        result = context_script(ctx, script, params, timeout_s=timeout_s, grace_s=grace_s)
        return result.summary()

    return run
