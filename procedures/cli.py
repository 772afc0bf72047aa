"""``pyros``: the operator's command line, talking to PyROS's REST API (no Django here).

Token and URL from ``PYROS_TOKEN`` / ``PYROS_URL`` or ``~/.config/pyros/cli.toml`` (``url = "..."``,
``token = "..."``; create a token with ``manage.py create_api_token EMAIL``). Exit codes: 0 done, 1 refused
by PyROS (the message says why), 2 bad usage, 3 PyROS unreachable or the token refused. ``--json`` prints
PyROS's answer as it is."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import tomllib
import urllib.parse
from pathlib import Path

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
CONFIG = Path(os.environ.get("PYROS_CLI_CONFIG", Path.home() / ".config" / "pyros" / "cli.toml"))


class CliError(Exception):
    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.msg, self.code = msg, code


def settings() -> tuple[str, str]:
    conf = {}
    if CONFIG.exists():
        conf = tomllib.loads(CONFIG.read_text())
    url = os.environ.get("PYROS_URL") or conf.get("url") or "http://127.0.0.1:8000"
    token = os.environ.get("PYROS_TOKEN") or conf.get("token") or ""
    return url.rstrip("/"), token


class Api:
    """PyROS's REST API over one kept-alive HTTP connection (the standard library's: the CLI starts in ~15 ms
    of imports instead of ~80 ms with requests). A connection the server closed in between is opened again."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"PYROS_URL {url!r}: expected http://host:port or https://host", EXIT_USAGE)
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self.headers = {"Accept": "application/json", "User-Agent": "pyros-cli"}
        if token:
            self.headers["Authorization"] = f"Token {token}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._netloc, timeout=self._timeout_s)
        return self._conn

    def _send(self, method: str, target: str, payload: bytes | None) -> tuple[int, str, bytes]:
        headers = dict(self.headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, target, body=payload, headers=headers)
                response = conn.getresponse()
                return response.status, response.reason, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> dict:
        target = f"{self._prefix}/api/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        payload = json.dumps(body).encode() if body is not None else None
        try:
            status, reason, raw = self._send(method, target, payload)
        except (OSError, http.client.HTTPException) as exc:
            self._conn = None
            raise CliError(f"PyROS unreachable at {self.url}: {exc}", EXIT_UNREACHABLE) from exc
        ok = status < 400
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"success": False, "msg": raw.decode(errors="replace")[:300]}
        if status in (401, 403):
            detail = (data.get("msg") or data.get("detail")) if isinstance(data, dict) else None
            raise CliError(f"refused ({status}): {detail or reason}"
                           + ("" if "Authorization" in self.headers else " (no token: set PYROS_TOKEN)"),
                           EXIT_UNREACHABLE if status == 401 else EXIT_REFUSED)
        if not isinstance(data, dict) or "success" not in data:
            data = {"success": ok, "msg": data.get("detail", "") if isinstance(data, dict) else "", "data": data}
        if not ok:
            data["success"] = False
        return data


def parse_params(pairs: list[str]) -> dict:
    """``k=v`` pairs; values stay strings (PyROS converts them by the procedure's schema), except JSON lists."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"parameter {pair!r}: expected name=value", EXIT_USAGE)
        out[key] = json.loads(value) if value.startswith("[") else value
    return out


# --- printing ------------------------------------------------------------------------------------
def _bar(fraction: float | None, width: int = 30) -> str:
    if fraction is None:
        return "[" + " " * width + "]"
    n = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * n + "." * (width - n) + f"] {fraction * 100:5.1f}%"


def _utc(iso: str | None) -> str:
    """An API time ('2026-12-05T01:35:06.674753Z') as PyROS shows times: '2026-12-05 01:35:06 UTC'."""
    return f"{iso[:10]} {iso[11:19]} UTC" if iso else ""


def format_queue(data: dict, *, log_lines: int = 8) -> str:
    q, env, run = data["queue"], data["environment"], data.get("running_item")
    lines = [f"queue: {q['state']}   environment: {env['status']}" + (f" (pid {env['pid']})" if env["pid"] else "")
             + ("" if env.get("manager_alive") else "   [manager not running]")]
    if q.get("block_until"):
        lines.append(f"procedure block until {_utc(q['block_until'])}")
    if q.get("waiting_reason"):
        lines.append(f"waiting: {q['waiting_reason']}")
    if run:
        p = run["progress"]
        lines.append(f"running: {run['procedure']} {json.dumps(run['params'])}  {run['duration_s'] or 0:.0f} s")
        lines.append(f"  {_bar(p['fraction'])} {p['message'] or ''}")
        for t, level, msg in (run.get("log") or [])[-log_lines:]:
            lines.append(f"  {t[11:19]} {level:<7} {msg}")
    lines.append(f"queued ({len(data['items'])}):")
    for i, item in enumerate(data["items"]):
        lines.append(f"  {i:>2} {item['uid'][:8]} {item['procedure']} {json.dumps(item['params'])}")
    return "\n".join(lines)


def format_history(items: list[dict]) -> str:
    lines = []
    for item in items:
        message = item["message"] if len(item["message"]) <= 80 else item["message"][:79] + "…"
        lines.append(f"{_utc(item['ended_at']):<23} {item['uid'][:8]} {item['procedure']:<20} {item['status']:<9} "
                     f"{item['duration_s'] or 0:7.1f} s  {message}")
    return "\n".join(lines) or "(no history)"


STATE_MARKS = {"pending": " ", "running": ">", "succeeded": "+", "failed": "!", "skipped": "-", "aborted": "x"}


def format_flow(data: dict) -> str:
    """An item's flow as an indented tree: one line per step, container and loop iteration."""
    item, flow = data["item"], data.get("flow")
    head = f"{item['procedure']} {item['uid'][:8]} {item['status']}" + (f": {item['message']}" if item["message"] else "")
    if not flow:
        return head + "\n(not a flow, or its flow has not started)"
    c = flow["counts"]
    lines = [head, f"steps: {c['steps']}, succeeded {c['succeeded']} (of which {c['reused']} in an earlier run), "
                   f"failed {c['failed']}, aborted {c['aborted']}, skipped {c['skipped']}, pending {c['pending']}, "
                   f"running {c['running']}"]
    if flow["recovered_from"]:
        lines.append(f"recovers {flow['recovered_from'][:8]}")
    for r in flow["recoveries"]:
        lines.append(f"recovered by {r['uid'][:8]} ({r['status']})")
    for s in flow["steps"]:
        mark = STATE_MARKS.get(s["state"], "?")
        label = s["name"] + (f" = {json.dumps(s['value'])}" if s["kind"] == "iteration" else "")
        extra = " (earlier run)" if s["reused"] else f" {s['duration_s']:.1f} s" if s["duration_s"] is not None else ""
        message = f"  {s['message'][:80]}" if s["message"] and s["kind"] == "step" else ""
        lines.append(f"[{mark}] {'  ' * s['depth']}{label:<{max(1, 30 - 2 * s['depth'])}} {s['state']:<9}{extra}{message}")
    return "\n".join(lines)


def format_status(data: dict) -> str:
    lines = [f"phase {data.get('phase')}  mode {data.get('mode')}  safety {data.get('safety')}"
             + (f" ({'; '.join(data.get('safety_reasons') or [])})" if data.get("safety_reasons") else "")]
    if data.get("current"):
        c = data["current"]
        lines.append(f"sequence {c['sequence']} {c.get('name') or ''} on {c.get('target')}: {c.get('step')} "
                     f"{_bar(c.get('progress'))}")
    if data.get("procedure"):
        p = data["procedure"]
        lines.append(f"procedure {p.get('name')}: {p.get('step') or ''}")
    if data.get("idle_reason"):
        lines.append(f"idle: {data['idle_reason']}")
    return "\n".join(lines)


HISTORY_SEARCHED = 500


def _uid(api: Api, short: str) -> str:
    """A full item uid from its first characters (as printed): a queued, the running or an ended item."""
    if len(short) >= 32:
        return short
    data = api.call("GET", "queue/")
    seen = data.get("items", []) + ([data["running_item"]] if data.get("running_item") else []) + data.get("history", [])
    candidates = sorted({i["uid"] for i in seen if i["uid"].startswith(short)})
    if not candidates:
        hist = api.call("GET", "queue/history/", params={"limit": HISTORY_SEARCHED, "log": "false"})
        candidates = sorted({i["uid"] for i in hist.get("items", []) if i["uid"].startswith(short)})
    if not candidates:
        raise CliError(f"no queue item {short!r}: none queued, running or among the last {HISTORY_SEARCHED} ended "
                       f"starts so (`pyros queue show`, `pyros queue history` print their uids)", EXIT_REFUSED)
    if len(candidates) > 1:
        raise CliError(f"{short!r} matches {len(candidates)} items ({', '.join(c[:13] for c in candidates[:5])}): "
                       f"give more of its uid", EXIT_USAGE)
    return candidates[0]


# --- commands ------------------------------------------------------------------------------------
def run(args, api: Api) -> dict:  # noqa: C901 - one dispatch table, read top to bottom
    cmd = args.command
    if cmd == "status":
        status = api.call("GET", "observatory/status/")
        queue = api.call("GET", "queue/")
        return {"success": status.get("success", True) and queue["success"], "msg": "",
                "observatory": status.get("data", status), "queue": queue}
    if cmd == "procedures":
        if args.action == "list":
            return api.call("GET", "procedures/")
        if args.action == "show":
            return api.call("GET", f"procedures/{args.name}/")
        if args.action == "changes":
            return api.call("GET", "procedures/changes/")
        return api.call("POST", "procedures/reload/")
    if cmd == "queue":
        a = args.action
        if a == "add":
            body = {"procedure": args.name, "params": parse_params(args.params)}
            if args.timeout:
                body["timeout_s"] = args.timeout
            if args.pos:
                body["pos"] = args.pos
            return api.call("POST", "queue/items/", body)
        if a == "batch":
            items = json.loads(Path(args.file).read_text() if args.file != "-" else sys.stdin.read())
            return api.call("POST", "queue/batch/", {"items": items})
        if a == "show":
            return api.call("GET", "queue/")
        if a == "history":
            return api.call("GET", "queue/history/", params={"limit": args.limit, "log": "false"})
        if a == "requeue":
            return api.call("POST", "queue/history/requeue/", {"uid": _uid(api, args.uid)})
        if a == "recover":
            return api.call("POST", "queue/history/recover/", {"uid": _uid(api, args.uid)})
        if a == "flow":
            return api.call("GET", f"queue/items/{_uid(api, args.uid)}/")
        if a == "move":
            body = {"uid": _uid(api, args.uid)}
            if args.before:
                body["before_uid"] = _uid(api, args.before)
            elif args.after:
                body["after_uid"] = _uid(api, args.after)
            else:
                body["pos"] = args.pos or "back"
            return api.call("POST", "queue/move/", body)
        if a == "remove":
            return api.call("POST", "queue/remove/", {"uid": _uid(api, args.uid)})
        if a == "pause":
            return api.call("POST", "queue/pause/", {"when": "immediate" if args.immediate else "deferred"})
        if a == "env":
            if not args.env_action:  # no action: show it
                return api.call("GET", "queue/")
            return api.call("POST", "queue/environment/", {"action": args.env_action})
        if a == "block":
            return api.call("POST", "queue/block/", {"minutes": args.minutes})
        return api.call("POST", f"queue/{a}/", {})
    if cmd == "observatory":
        body = {"when": "immediate" if getattr(args, "immediate", False) else "deferred"} if args.action == "pause" else {}
        return api.call("POST", f"observatory/{args.action}/", body)
    if cmd == "requests":
        if args.action == "list":
            return api.call("GET", "requests/", params={"limit": args.limit})
        if args.action == "show":
            return api.call("GET", f"requests/{args.id}/")
        return api.call("POST", f"requests/{args.id}/cancel/", {})
    raise CliError(f"unknown command {cmd}", EXIT_USAGE)


def show(args, data: dict) -> str:
    if args.command == "status":
        return format_status(data["observatory"]) + "\n" + format_queue(data["queue"], log_lines=3)
    if args.command == "queue" and args.action == "show":
        return format_queue(data)
    if args.command == "queue" and args.action == "env" and not args.env_action:
        env = data["environment"]
        return (f"environment: {env['status']}" + (f" (pid {env['pid']})" if env["pid"] else "")
                + ("" if env.get("manager_alive") else "   [manager not running]"))
    if args.command == "queue" and args.action in ("add", "requeue", "recover") and data.get("item"):
        uid = data["item"]["uid"][:8]
        follow = f"`pyros queue flow {uid}`" if args.action == "recover" else "`pyros queue show`"
        return f"{data.get('msg')}: item {uid} (follow it with {follow})"
    if args.command == "procedures" and args.action == "changes":
        c = data.get("changes") or {}
        out = [data.get("msg") or ""]
        out += [f"  {label}: {', '.join(c[key])}" for key, label in (("added", "added"), ("modified", "modified"),
                                                                     ("removed", "removed")) if c.get(key)]
        if len(out) > 1:
            out.append("`pyros procedures reload` loads them")
        return "\n".join(out)
    if args.command == "queue" and args.action == "history":
        return format_history(data["items"])
    if args.command == "queue" and args.action == "flow":
        return format_flow(data)
    if args.command == "procedures" and args.action == "list":
        out = [f"{p['name']:<22} {p['sky']:<9} {p['title']}" for p in data["procedures"]]
        out += [f"! module {m['name']}: {m['error'].strip().splitlines()[-1]}" for m in data["modules"] if m["error"]]
        return "\n".join(out)
    if args.command == "procedures" and args.action == "show":
        p = data["procedure"]
        out = [f"{p['name']} — {p['title']} (module {p['module']}, sky {p['sky']}, timeout {p['timeout_s']:g} s)",
               p["description"], "parameters:"]
        for name, prop in p["schema"]["properties"].items():
            kind = prop.get("type", "enum")
            unit = f" [{prop['x-unit']}]" if prop.get("x-unit") else ""
            default = f" = {json.dumps(prop['default'])}" if "default" in prop else " (required)"
            out.append(f"  {name}: {kind}{unit}{default}  {prop.get('description', '')}")
        return "\n".join(out)
    if args.command == "requests" and args.action == "list":
        rows = data.get("data", {}).get("results", [])
        return "\n".join(f"{r['id']:>6} {r.get('status', ''):<12} {r.get('name', '')}" for r in rows) or "(none)"
    if args.command == "requests" and args.action == "show":
        return json.dumps(data.get("data", data), indent=2)
    return data.get("msg") or ("done" if data.get("success") else "refused")


def monitor(api: Api, *, interval_s: float, once: bool, as_json: bool) -> int:
    """Redraw the queue and the running item's log until Ctrl-C."""
    try:
        while True:
            data = api.call("GET", "queue/")
            status = api.call("GET", "observatory/status/")
            if as_json:
                print(json.dumps({"queue": data, "observatory": status.get("data", status)}), flush=True)
            else:
                sys.stdout.write("\x1b[H\x1b[2J" if sys.stdout.isatty() else "")
                print(time.strftime("%H:%M:%S"), format_status(status.get("data", status)))
                print(format_queue(data, log_lines=15), flush=True)
            if once:
                return EXIT_OK
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyros", description="PyROS operator command line (REST API)")
    p.add_argument("--json", action="store_true", help="print PyROS's answer as JSON")
    p.add_argument("--url", help="PyROS's address (default PYROS_URL or the config file)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="observatory and queue")
    mon = sub.add_parser("monitor", help="live view of the queue and the running item")
    mon.add_argument("--interval", type=float, default=1.0)
    mon.add_argument("--once", action="store_true", help="draw once and exit")
    pr = sub.add_parser("procedures").add_subparsers(dest="action", required=True)
    pr.add_parser("list")
    pr.add_parser("show").add_argument("name")
    pr.add_parser("changes", help="detect changes on disk")
    pr.add_parser("reload")
    q = sub.add_parser("queue", help="the procedure queue (no action: show it)").add_subparsers(dest="action")
    add = q.add_parser("add", help="queue NAME k=v ...")
    add.add_argument("name")
    add.add_argument("params", nargs="*")
    add.add_argument("--timeout", type=float)
    add.add_argument("--pos", help="front, back or an index")
    q.add_parser("batch", help="queue a JSON list of {procedure, params} (all or nothing)").add_argument("file")
    for name, text in (("show", "the queue, the running item and its log"), ("start", "start the queue"),
                       ("stop", "stop the queue (the running item finishes)"), ("resume", "resume a paused queue"),
                       ("abort", "abort the running item (the queue goes on)"),
                       ("clear", "remove every queued item")):
        q.add_parser(name, help=text)
    q.add_parser("pause", help="pause after the running item (--immediate: stop it now, queued again at the front)"
                 ).add_argument("--immediate", action="store_true")
    hist = q.add_parser("history", help="ended items, latest first")
    hist.add_argument("--limit", type=int, default=20)
    q.add_parser("requeue", help="queue an ended item again (a flow: from the start)").add_argument("uid")
    q.add_parser("recover", help="queue a recovery run of a flow that did not complete: its succeeded steps are "
                                 "not run again").add_argument("uid")
    q.add_parser("flow", help="the steps of a flow item, as a tree with their states").add_argument("uid")
    q.add_parser("remove", help="remove a queued item").add_argument("uid")
    mv = q.add_parser("move", help="move a queued item (--pos front|back|INDEX, --before UID, --after UID)")
    mv.add_argument("uid")
    mv.add_argument("--pos")
    mv.add_argument("--before")
    mv.add_argument("--after")
    q.add_parser("env", help="the worker environment (its status and pid); open, close or restart it").add_argument(
        "env_action", nargs="?", choices=["open", "close", "restart"])
    q.add_parser("block", help="open a procedure block for MINUTES (0 closes it)").add_argument("minutes", type=float)
    for action in ("pause", "resume", "stop", "abort", "close", "calibrate"):
        ob = sub.add_parser(action, help=f"observatory: {action}")
        ob.set_defaults(command="observatory", action=action)
        if action == "pause":
            ob.add_argument("--immediate", action="store_true")
    req = sub.add_parser("requests").add_subparsers(dest="action", required=True)
    req.add_parser("list").add_argument("--limit", type=int, default=50)
    req.add_parser("show").add_argument("id", type=int)
    req.add_parser("cancel").add_argument("id", type=int)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "queue" and args.action is None:  # `pyros queue`: the queue as it is
        args.action = "show"
    url, token = settings()
    api = None
    try:
        api = Api(args.url or url, token)
        if args.command == "monitor":
            return monitor(api, interval_s=args.interval, once=args.once, as_json=args.json)
        data = run(args, api)
    except CliError as exc:
        print(json.dumps({"success": False, "msg": exc.msg}) if args.json else f"pyros: {exc.msg}", file=sys.stderr)
        return exc.code
    finally:
        if api is not None:
            api.close()
    try:
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            text = show(args, data) if data.get("success") else f"refused: {data.get('msg')}"
            print(text, file=sys.stdout if data.get("success") else sys.stderr, flush=True)
    except BrokenPipeError:  # `pyros queue flow X | head`: the reader had enough, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK if data.get("success") else EXIT_REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
