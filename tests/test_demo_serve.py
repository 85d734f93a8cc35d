"""`gmv demo` ends by printing the `gmv serve` command that shows its results, and that
command serves them."""
import json
import re
import shlex
import subprocess
import sys
import urllib.request

import pytest


@pytest.mark.slow
def test_demo_prints_a_working_serve_command(tmp_path):
    store = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "gmv_store", "demo", "--quick", "--profile", "basic", "--m", "20",
                        "--store", str(store)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1].split("#")[0].strip()
    assert re.fullmatch(rf"gmv serve --store {re.escape(str(store))}", line), line
    args = shlex.split(line)[1:] + ["--port", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline()).group(1)
        status = json.loads(urllib.request.urlopen(url + "/api/status", timeout=30).read())
        assert status["training_images"] == 5000 and {s["set_name"] for s in status["sets"]} == {
            "demo-gmm-k30", "demo-gmm-k50", "demo-gmm-k100"}
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
