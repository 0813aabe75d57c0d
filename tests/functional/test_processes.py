"""The Procfile's processes as real programs: `atelier web` (gunicorn) and `atelier worker` (Dramatiq)
serve an upload end to end, through the same database and Redis as the rest of the suite."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import factories
from tests.conftest import make_user
from tests.helpers import atelier_processes, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def processes(tmp_path):
    with atelier_processes(tmp_path, "worker") as base:
        yield base


def test_upload_is_ingested_by_the_worker_process_and_downloaded(processes, tmp_path):
    _, key = make_user("dora")
    headers = {"Authorization": f"Bearer {key}"}
    model = requests.post(f"{processes}/api/v1/models", headers=headers, json={"name": "Proc", "type": "LORA"}).json()
    version = requests.post(f"{processes}/api/v1/model-versions", headers=headers, json={
        "modelId": model["id"], "name": "v1", "baseModel": "SDXL 1.0"}).json()
    data = factories.safetensors_file(tmp_path / "proc.safetensors", "LoRA").read_bytes()
    upload = requests.post(f"{processes}/api/v1/model-versions/{version['id']}/files", headers=headers,
                           files={"file": ("proc.safetensors", data)}).json()
    deadline = time.monotonic() + 60
    while upload["state"] == "processing" and time.monotonic() < deadline:
        time.sleep(0.3)
        upload = requests.get(f"{processes}/api/v1/uploads/{upload['id']}", headers=headers).json()
    assert upload["state"] == "done", upload
    published = requests.post(f"{processes}/api/v1/model-versions/{version['id']}/publish", headers=headers)
    assert published.status_code == 200
    download = requests.get(f"{processes}/api/download/models/{version['id']}")
    assert download.history[0].status_code == 307 and download.content == data


def embedded_env(home: Path) -> dict:
    """The environment of a fresh install in home, on its own embedded database and redis-server."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PORT")}
    env.update(ATELIER_HOME=str(home), PATH=f"{Path(sys.executable).parent}:{env['PATH']}", WEB_WORKERS="1")
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return not stat.split(") ", 1)[1].startswith("Z")  # a zombie has exited


@pytest.mark.skipif(bool(os.environ.get("ATELIER_TEST_REDIS_URL")), reason="about the embedded redis-server")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_the_procfile_processes_stops_their_embedded_redis(tmp_path, stop):
    """`make run` is honcho on the Procfile: a signal to its process group stops every process, and the
    redis-server that the first of them started for the install goes with them."""
    home, env = tmp_path / "home", embedded_env(tmp_path / "home")
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "atelier"), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = free_port()
    pidfile, sock = home / "redis" / "redis.pid", home / "redis" / "redis.sock"
    with open(tmp_path / "honcho.log", "wb") as log:
        honcho = subprocess.Popen([str(bin_dir / "honcho"), "start", "-f", str(ROOT / "Procfile"), "-p", str(port)],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120), (tmp_path / "honcho.log").read_text()
        assert sock.exists() and pidfile.exists()
        pid = int(pidfile.read_text())
        assert _alive(pid)
        os.killpg(honcho.pid, stop)
        honcho.wait(timeout=60)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), (tmp_path / "honcho.log").read_text()[-3000:]
        assert not sock.exists()
    finally:
        if honcho.poll() is None:  # the test failed before its signal: honcho stops its processes itself
            os.killpg(honcho.pid, signal.SIGTERM)
            try:
                honcho.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
        kill_install(home)  # anything of the install left over (what the test is about, if it failed)


def kill_install(home: Path) -> None:
    """Kills every process of the install in home: found by its ATELIER_HOME, or a redis-server by its socket
    path in its title (it rewrites its environment). Left running, they would start another redis-server
    there whenever theirs went away."""
    import psutil
    mine = str(home)
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("ATELIER_HOME") == mine or f"{mine}/redis/" in " ".join(proc.cmdline()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass


@pytest.mark.parametrize("started_by, stop", [("serve", signal.SIGTERM), ("serve", signal.SIGKILL),
                                              ("another process", signal.SIGTERM)])
def test_redis_serve_owns_the_embedded_server(tmp_path, started_by, stop):
    """`atelier redis serve` stops the server when it is stopped, whether it started the server or found it
    running (another process of the install came first); killed outright, the server it started goes too."""
    home, env = tmp_path / "home", embedded_env(tmp_path / "home")
    atelier = str(Path(sys.executable).parent / "atelier")
    pidfile = home / "redis" / "redis.pid"
    if started_by != "serve":
        subprocess.run([atelier, "redis", "start"], env=env, check=True, capture_output=True)
    serve = subprocess.Popen([atelier, "redis", "serve"], env=env, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        said = serve.stderr.readline()
        assert ("(started)" if started_by == "serve" else "(already running)") in said
        pid = int(pidfile.read_text())
        assert _alive(pid)
        os.killpg(serve.pid, stop)
        assert serve.wait(timeout=20) == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        if serve.poll() is None:
            serve.kill()
        kill_install(home)


def test_redis_serve_with_redis_url_set_only_waits_for_its_signal(tmp_path):
    """Honcho stops every process when one exits: with REDIS_URL set `atelier redis serve` has nothing to own,
    so it waits, and a signal ends it cleanly."""
    env = dict(embedded_env(tmp_path / "home"), REDIS_URL="redis://127.0.0.1:1/0")  # never connected to
    serve = subprocess.Popen([str(Path(sys.executable).parent / "atelier"), "redis", "serve"], env=env,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "REDIS_URL is set" in serve.stderr.readline()
        with pytest.raises(subprocess.TimeoutExpired):
            serve.wait(timeout=1)
        os.killpg(serve.pid, signal.SIGTERM)
        assert serve.wait(timeout=20) == 0
        assert not (tmp_path / "home" / "redis").exists()
    finally:
        if serve.poll() is None:
            serve.kill()
