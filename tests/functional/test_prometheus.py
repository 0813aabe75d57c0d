"""A real Prometheus (Debian's package, installed by `make test`) scrapes the app: metrics flow, the
shipped rules load, and every dashboard query is valid PromQL."""
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import run_jobs
from tests.helpers import free_port, wait_http

ROOT = Path(__file__).parents[2]
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus package is not installed")


METRICS_TOKEN = "scrape-token-for-tests"


@pytest.fixture
def prometheus(live_server, tmp_path, configure):
    """The shipped config with its bearer token (README's way: `authorization: credentials_file:`)."""
    configure(METRICS_TOKEN=METRICS_TOKEN)
    port = free_port()
    target = live_server.removeprefix("http://")
    shutil.copy(ROOT / "metrics" / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "metrics_token").write_text(METRICS_TOKEN + "\n")
    config = (ROOT / "metrics" / "prometheus.yml").read_text()
    commented = "    # authorization:\n    #   credentials_file: /etc/prometheus/atelier_metrics_token\n"
    assert commented in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("scrape_interval: 15s", "scrape_interval: 1s").replace("127.0.0.1:8000", target)
        .replace(commented, f"    authorization:\n      credentials_file: {tmp_path / 'metrics_token'}\n"))
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    assert wait_http(f"{base}/-/ready", 30), (tmp_path / "prometheus.log").read_text()[-2000:]
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def query(base: str, expr: str) -> dict:
    body = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]


def wait_for(base: str, expr: str, check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(base, expr)["result"]
        if result and check(float(result[0]["value"][1])):
            return float(result[0]["value"][1])
        time.sleep(0.5)
    pytest.fail(f"{expr} never satisfied the check; last result: {result}")


def test_job_and_http_metrics_reach_prometheus(prometheus, live_server, worker, alice):
    from jobs.notifications import notify
    expr = 'sum(atelier_job_messages_total{actor="notify",outcome="succeeded"})'
    before = query(prometheus, expr)["result"]
    start = float(before[0]["value"][1]) if before else 0.0
    notify.send(alice[0].id, "hello", "metrics test", f"metrics-{time.time()}")
    run_jobs(worker)
    assert wait_for(prometheus, expr, lambda v: v >= start + 1) >= start + 1
    requests.get(f"{live_server}/api/v1/models")
    wait_for(prometheus, 'sum(atelier_http_requests_total{endpoint="/api/v1/models"})', lambda v: v >= 1)
    wait_for(prometheus, 'count(atelier_queue_messages{queue="gpu"})', lambda v: v == 4)
    rules = requests.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"AtelierQueueBacklog", "AtelierJobFailureRatio",
                                                              "AtelierNoGpuWorker", "AtelierSchedulerStale"}


def test_metrics_need_the_token_when_one_is_set(client, configure):
    assert client.get("/metrics").status_code == 200  # no METRICS_TOKEN: open, as before
    configure(METRICS_TOKEN=METRICS_TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {METRICS_TOKEN}"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), headers
        assert b"atelier_" not in r.data
    r = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and b"atelier_queue_messages" in r.data


def test_dashboard_queries_are_valid_promql(prometheus):
    dashboard = json.loads((ROOT / "metrics" / "dashboards" / "atelier.json").read_text())
    assert dashboard["panels"] and dashboard["uid"]
    for panel in dashboard["panels"]:
        assert {"id", "type", "title", "gridPos", "targets"} <= set(panel)
        for target in panel["targets"]:
            query(prometheus, target["expr"])


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    result = subprocess.run([promtool, "check", "rules", str(ROOT / "metrics" / "alerts.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
