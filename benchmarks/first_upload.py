"""The first uploads to a fresh `gmv serve`, timed from the client: start the server, wait
for its background warm-up, then post the same image to /api/match a few times.

    python benchmarks/first_upload.py --store gmv-demo --image gmv-demo/demo-generated/3/0003.png

With the warm-up scoring a dummy image with every backend, the first answer should take
about what later ones take; before it, the first paid the quality metric's torch import.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid


def post(url: str, data: bytes) -> float:
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(url + "/api/match", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    t = time.perf_counter()
    urllib.request.urlopen(req, timeout=300).read()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="gmv-demo")
    ap.add_argument("--image", required=True)
    ap.add_argument("--wait", type=float, default=25.0, help="seconds between start and the first upload")
    ap.add_argument("--uploads", type=int, default=4)
    a = ap.parse_args()
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", "serve", "--store", a.store, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline()).group(1)
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/api/status", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(a.wait)
        data = open(a.image, "rb").read()
        times = [post(url, data) for _ in range(a.uploads)]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"load average {os.getloadavg()[0]:.1f}; first upload {times[0]:.2f} s, then "
          + ", ".join(f"{t:.2f}" for t in times[1:]) + " s")


if __name__ == "__main__":
    main()
