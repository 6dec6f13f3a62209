"""Settings come from the environment only, with defaults that work on a local machine."""

import pytest

from core import load_settings, task_timeouts


def test_defaults_point_at_local_services() -> None:
    settings = load_settings({})
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://localhost/longjobs"
    assert settings["REDIS_URL"] == "redis://localhost:6379/0"
    assert settings["RQ_DASHBOARD_USERNAME"] == "admin"
    assert settings["RQ_DASHBOARD_PASSWORD"] is None
    assert settings["MODEL_TIMEOUT"] > 0
    assert settings["RETRY_ATTEMPTS"] >= 1


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_heroku_and_plain_postgres_urls_use_psycopg2(scheme: str) -> None:
    settings = load_settings({"DATABASE_URL": f"{scheme}://u:p@db.example:5432/d1"})
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://u:p@db.example:5432/d1"
    # The engine that writes jobs' rows follows DATABASE_URL too.
    assert settings["SQLALCHEMY_BINDS"]["autocommit"]["url"] == settings["SQLALCHEMY_DATABASE_URI"]


def test_tls_redis_accepts_a_self_signed_certificate_unless_told_otherwise() -> None:
    url = load_settings({"REDIS_URL": "rediss://:pw@cache.example:6380"})["REDIS_URL"]
    assert url == "rediss://:pw@cache.example:6380?ssl_cert_reqs=none&ssl_check_hostname=false"
    strict = "rediss://cache.example:6380/0?ssl_cert_reqs=required"
    assert load_settings({"REDIS_URL": strict})["REDIS_URL"] == strict
    assert load_settings({"REDIS_URL": "redis://h:1/2"})["RQ_DASHBOARD_REDIS_URL"] == "redis://h:1/2"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"DATABASE_URL": "mysql://localhost/x"}, "DATABASE_URL"),
        ({"DATABASE_URL": "localhost/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"MODEL_TIMEOUT": "ten"}, "MODEL_TIMEOUT"),
        ({"MODEL_TIMEOUT": "0"}, "MODEL_TIMEOUT"),
        ({"FAILED_JOB_TTL": "-5"}, "FAILED_JOB_TTL"),
        ({"RETRY_ATTEMPTS": "1.5"}, "RETRY_ATTEMPTS"),
    ],
)
def test_bad_settings_fail_at_start_naming_the_variable(environ: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        load_settings(environ)


def test_a_models_timeout_is_its_setting_else_its_files_else_model_timeout() -> None:
    declared = {"multiply": 360, "enkf": None, "simulation": 600}
    timeouts = task_timeouts({"SIMULATION_TIMEOUT": "5"}, declared, 1800)
    assert timeouts == {"multiply": 360, "enkf": 1800, "simulation": 5}
    with pytest.raises(ValueError, match="ENKF_TIMEOUT"):
        task_timeouts({"ENKF_TIMEOUT": "soon"}, declared, 1800)
