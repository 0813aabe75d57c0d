import pytest

import settings


def test_defaults_are_embedded(tmp_path):
    s = settings.load({"ATELIER_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'atelier.db'}"
    assert s.redis_url == "" and s.storage_url == f"file://{tmp_path / 'blobs'}"
    assert s.port == 8000


def test_secret_key_is_generated_once_and_kept(tmp_path):
    first = settings.load({"ATELIER_HOME": str(tmp_path)}).secret_key
    assert len(first) == 64
    assert settings.load({"ATELIER_HOME": str(tmp_path)}).secret_key == first
    assert settings.load({"ATELIER_HOME": str(tmp_path), "SECRET_KEY": "given"}).secret_key == "given"


def test_services_by_url(tmp_path):
    s = settings.load({"ATELIER_HOME": str(tmp_path), "DATABASE_URL": "postgresql://u@h:5432/d",
                       "REDIS_URL": "redis://h:6379/1", "STORAGE_URL": "s3://bucket/p", "PORT": "8123"})
    assert (s.database_url, s.redis_url, s.storage_url, s.port) == (
        "postgresql://u@h:5432/d", "redis://h:6379/1", "s3://bucket/p", 8123)
    assert not s.is_sqlite


def test_readme_documents_every_variable():
    from pathlib import Path
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].splitlines()[:2]
    assert [line.split()[:2] for line in first_block] == [["make", "run"], ["make", "test"]]
    for name in settings.VARIABLES:
        assert f"`{name}`" in readme, name


def test_secret_key_and_sqlite_file_are_private(tmp_path):
    """A fresh ATELIER_HOME under the usual umask: the key and the database are the owner's alone."""
    import os
    import stat
    import subprocess
    import sys
    from pathlib import Path
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "REDIS_URL")}
    env.update(ATELIER_HOME=str(home), PYTHONPATH=str(Path(__file__).parents[2]))
    subprocess.run([sys.executable, "-c", "from models_db.migrations import upgrade; upgrade()"], env=env,
                   check=True, preexec_fn=lambda: os.umask(0o022))
    for path in (home / "secret_key", home / "atelier.db"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    assert stat.S_IMODE(home.stat().st_mode) & 0o077 == 0
    (home / "secret_key").chmod(0o644)  # an install from before: its key is made private
    settings.load({"ATELIER_HOME": str(home)})
    assert stat.S_IMODE((home / "secret_key").stat().st_mode) == 0o600


def test_a_world_writable_home_is_refused(tmp_path):
    tmp_path.chmod(0o777)
    with pytest.raises(SystemExit, match="world-writable"):
        settings.load({"ATELIER_HOME": str(tmp_path)})


def test_readme_table_is_the_variables_and_every_default_can_be_copied(tmp_path):
    """README's table is rendered from VARIABLES; a default shown as a value works when set literally
    (no `generated`, `embedded` or `$ATELIER_HOME` that would be taken as written)."""
    from pathlib import Path
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert settings.readme_table() in readme
    for name, (default, _) in settings.VARIABLES.items():
        if default is not None:
            settings.load({"ATELIER_HOME": str(tmp_path), "SECRET_KEY": "k", name: default})
            assert "$" not in default, name


@pytest.mark.parametrize("name,value,fragment", [
    ("REDIS_URL", "embedded", "REDIS_URL"), ("REDIS_URL", "localhost:6379", "redis://"),
    ("DATABASE_URL", "mysql://h/d", "DATABASE_URL"), ("STORAGE_URL", "/srv/blobs", "STORAGE_URL"),
    ("SECRET_KEY", "generated", "SECRET_KEY"), ("PUBLIC_URL", "example.org", "PUBLIC_URL"),
    ("SOLR_URL", "solr:8983", "SOLR_URL"), ("PORT", "70000", "PORT"), ("WEB_WORKERS", "0", "WEB_WORKERS"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL"), ("DOWNLOAD_LINK_TTL", "-1", "DOWNLOAD_LINK_TTL"),
])
def test_clearly_wrong_values_are_refused_at_start(tmp_path, name, value, fragment):
    with pytest.raises(SystemExit) as stop:
        settings.load({"ATELIER_HOME": str(tmp_path), name: value})
    assert fragment in str(stop.value)
