#!/usr/bin/env python3
# --- pyros procedure ---
# title = "Disk space and night files check"
# description = """Free space on the data disk (and any other folder given), the FITS files written in the
# last hours with their total size, and the queue as the REST API sees it. Fails when a disk has less free
# space than asked: the night's frames would not fit."""
# timeout_s = 300
# sky = "none"
# tags = ["engineering", "night report"]
#
# [params.min_free_gb]
# type = "number"
# default = 5.0
# minimum = 0
# unit = "GB"
# help = "fail when a checked disk has less free space than this"
#
# [params.hours]
# type = "number"
# default = 24.0
# minimum = 0
# maximum = 720
# unit = "h"
# help = "count the FITS files written in the last hours"
#
# [params.paths]
# type = "array"
# items = "string"
# default = []
# help = "other folders whose disk to check (the data folder is always checked)"
#
# [params.query_api]
# type = "boolean"
# default = true
# help = "read the queue through the REST API, as the operator who queued this check"
# --- end ---
"""A script procedure (procedures/external.py): parameters arrive as --name=value arguments and in
PYROS_PARAMS; results are published with procedures.script_client; the exit status decides the outcome."""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from procedures.script_client import ApiError, api, progress, publish


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--min_free_gb", type=float, default=5.0)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--paths", type=json.loads, default=[])
    parser.add_argument("--query_api", type=json.loads, default=True)
    args = parser.parse_args()

    data_dir = Path(os.environ.get("PYROS_DATA_DIR") or ".")
    folders = [data_dir, *(Path(p) for p in args.paths)]
    disks, low, missing = [], [], []
    for i, folder in enumerate(folders, start=1):
        progress(i - 1, len(folders) + 1, f"disk of {folder}")
        if not folder.exists():
            print(f"{folder}: does not exist", file=sys.stderr)
            missing.append(f"{folder} does not exist")
            continue
        usage = shutil.disk_usage(folder)
        free_gb = usage.free / 1e9
        disks.append({"path": str(folder), "free_gb": round(free_gb, 2), "total_gb": round(usage.total / 1e9, 2),
                      "used_percent": round(100.0 * usage.used / usage.total, 1)})
        print(f"{folder}: {free_gb:.1f} GB free of {usage.total / 1e9:.1f} GB")
        if free_gb < args.min_free_gb:
            low.append(f"{folder}: {free_gb:.1f} GB free, less than {args.min_free_gb:g} GB")
        publish(disks=disks)

    progress(len(folders), len(folders) + 1, "night files")
    since = time.time() - args.hours * 3600.0
    count = size = 0
    if data_dir.is_dir():
        for path in data_dir.rglob("*.fits"):
            try:
                stat = path.stat()
            except OSError:
                continue
            if stat.st_mtime >= since:
                count += 1
                size += stat.st_size
    print(f"{count} FITS file(s) written in the last {args.hours:g} h ({size / 1e6:.1f} MB)")
    publish(night_files=count, night_mb=round(size / 1e6, 1))

    if args.query_api:
        try:
            queue = api("GET", "queue/")
            publish(api="ok", queue_state=queue["queue"]["state"], queued_items=queue["queue"]["items_count"])
            print(f"queue {queue['queue']['state']}, {queue['queue']['items_count']} item(s) waiting")
        except ApiError as exc:  # the check itself is not about the web server: say so and go on
            print(f"REST API not usable: {exc}", file=sys.stderr)
            publish(api=f"not usable ({exc.status or 'unreachable'})")
    progress(len(folders) + 1, len(folders) + 1, "done")
    if low or missing:  # the last stderr line is the outcome's reason on the item
        print(("low disk space: " if low else "disk check failed: ") + "; ".join(low + missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
