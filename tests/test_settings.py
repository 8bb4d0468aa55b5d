"""Settings: defined once, read from the environment at a process's edge."""

from __future__ import annotations

import pytest

from jobqueue.settings import DEFAULT_REDIS_URL, Settings


def test_redis_url_sources_in_order() -> None:
    assert Settings.from_env({}).redis_url == DEFAULT_REDIS_URL
    assert Settings.from_env({"REDIS_ADDR": "db:6380"}).redis_url == "redis://db:6380/0"
    both = {"REDIS_ADDR": "db:6380", "REDIS_URL": "rediss://cache:6390/2"}
    assert Settings.from_env(both).redis_url == "rediss://cache:6390/2"
    assert (
        Settings.from_env({**both, "JOBQUEUE_REDIS_URL": "unix:///run/r.sock"}).redis_url
        == "unix:///run/r.sock"
    )


def test_jobqueue_variables_and_overrides() -> None:
    env = {
        "JOBQUEUE_PORT": "9000",
        "JOBQUEUE_RETENTION_S": "60.5",
        "JOBQUEUE_CORS_ORIGINS": "https://a.example, https://b.example,",
        "JOBQUEUE_PREFIX": "other",
    }
    settings = Settings.from_env(env, port=9100, host=None)
    assert (settings.port, settings.host, settings.prefix) == (9100, "0.0.0.0", "other")
    assert settings.retention_ms == 60_500
    assert settings.cors_origins == ("https://a.example", "https://b.example")


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="JOBQUEUE_PORT='eighty' is not a number"):
        Settings.from_env({"JOBQUEUE_PORT": "eighty"})


def test_settings_go_to_a_child_process_and_back() -> None:
    settings = Settings(
        redis_url="redis://db:1/2", prefix="p", cors_origins=("https://a", "https://b"), port=1
    )
    assert Settings.from_env(settings.to_env()) == settings


def test_the_repr_hides_the_redis_password() -> None:
    settings = Settings(redis_url="rediss://app:s3cret@db:6380/0?password=other&ssl_ca_certs=/ca.pem")
    shown = repr(settings)
    assert "s3cret" not in shown and "other" not in shown
    assert "rediss://app:***@db:6380/0?password=***&ssl_ca_certs=/ca.pem" in shown
    assert "prefix='jq'" in shown
