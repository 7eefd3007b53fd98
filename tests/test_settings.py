"""server/settings.py: IMGCDN_* parsing, the config file, one-line errors, the settings table."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from server.settings import FIELDS, Settings, SettingsError, settings_table

MIB = 1024 * 1024


def load_error(environ: dict[str, str], config_file: Path | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        Settings.load(environ, config_file)
    message = str(info.value)
    assert "\n" not in message, message
    assert "\r" not in message, message
    return message


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imgcdn.conf"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_empty_environment_loads_the_defaults():
    s = Settings.load({})
    assert s == Settings()
    assert s.data_dir == Path("imgcdn-data")
    assert s.storage == "file"
    assert s.admin_tokens == ()
    assert s.max_output_side == 8192
    assert s.render_threads >= 1


def test_variables_without_the_imgcdn_prefix_are_ignored():
    assert Settings.load({"PATH": "/usr/bin", "HOME": "/root", "imgcdn_foo": "1"}) == Settings()


@pytest.mark.parametrize(
    ("env", "value", "field", "parsed"),
    [
        ("IMGCDN_DATA_DIR", "/srv/images", "data_dir", Path("/srv/images")),
        ("IMGCDN_STORAGE", "file", "storage", "file"),
        ("IMGCDN_ADMIN_TOKENS", "a" * 16, "admin_tokens", ("a" * 16,)),
        (
            "IMGCDN_ADMIN_TOKENS",
            " " + "a" * 16 + " , " + "b" * 20 + ",",
            "admin_tokens",
            ("a" * 16, "b" * 20),
        ),
        ("IMGCDN_ADMIN_TOKENS", "", "admin_tokens", ()),
        ("IMGCDN_MAX_SOURCE_BYTES", "1024", "max_source_bytes", 1024),
        ("IMGCDN_MAX_SOURCE_BYTES", "100_000_000", "max_source_bytes", 100_000_000),
        ("IMGCDN_MAX_SOURCE_PIXELS", "1000000", "max_source_pixels", 1_000_000),
        ("IMGCDN_MAX_OUTPUT_SIDE", "16", "max_output_side", 16),
        ("IMGCDN_MAX_OUTPUT_SIDE", "65500", "max_output_side", 65500),
        ("IMGCDN_MAX_OUTPUT_PIXELS", "256", "max_output_pixels", 256),
        ("IMGCDN_MAX_FRAMES", "1", "max_frames", 1),
        ("IMGCDN_RENDER_TIMEOUT_S", "2.5", "render_timeout_s", 2.5),
        ("IMGCDN_RENDER_TIMEOUT_S", " 10 ", "render_timeout_s", 10.0),
        ("IMGCDN_MAX_QUEUE", "0", "max_queue", 0),
        ("IMGCDN_RENDER_THREADS", "3", "render_threads", 3),
        ("IMGCDN_MEMORY_CACHE_BYTES", "0", "memory_cache_bytes", 0),
        ("IMGCDN_META_TTL_S", "0", "meta_ttl_s", 0.0),
        ("IMGCDN_SHRINK_ON_LOAD", "quality", "shrink_on_load", "quality"),
        ("IMGCDN_JPEG_PRESET", "small", "jpeg_preset", "small"),
        ("IMGCDN_AVIF_EFFORT", "9", "avif_effort", 9),
        ("IMGCDN_LOG_LEVEL", "debug", "log_level", "debug"),
    ],
)
def test_a_valid_value_sets_its_field(env, value, field, parsed):
    assert getattr(Settings.load({env: value}), field) == parsed


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("IMGCDN_DATA_DIR", ""),
        ("IMGCDN_DATA_DIR", "   "),
        ("IMGCDN_STORAGE", "s3://Bad_Bucket/prefix"),
        ("IMGCDN_STORAGE", "s3://"),
        ("IMGCDN_S3_ENDPOINT", "localhost:8333"),
        ("IMGCDN_VARIANT_STORE", "yes"),
        ("IMGCDN_EDGE_PURGE_URLS", "nginx/purge"),
        ("IMGCDN_STORAGE", "ftp://host/x"),
        ("IMGCDN_STORAGE", "File"),
        ("IMGCDN_ADMIN_TOKENS", "short"),
        ("IMGCDN_ADMIN_TOKENS", "a" * 15),
        ("IMGCDN_MAX_SOURCE_BYTES", "lots"),
        ("IMGCDN_MAX_SOURCE_BYTES", "1023"),
        ("IMGCDN_MAX_SOURCE_BYTES", "50MB"),
        ("IMGCDN_MAX_SOURCE_PIXELS", "0"),
        ("IMGCDN_MAX_SOURCE_PIXELS", "1.5"),
        ("IMGCDN_MAX_OUTPUT_SIDE", "15"),
        ("IMGCDN_MAX_OUTPUT_SIDE", "65501"),
        ("IMGCDN_MAX_OUTPUT_SIDE", ""),
        ("IMGCDN_MAX_OUTPUT_PIXELS", "255"),
        ("IMGCDN_MAX_FRAMES", "0"),
        ("IMGCDN_MAX_FRAMES", "10001"),
        ("IMGCDN_RENDER_TIMEOUT_S", "0"),
        ("IMGCDN_RENDER_TIMEOUT_S", "601"),
        ("IMGCDN_RENDER_TIMEOUT_S", "nan"),
        ("IMGCDN_RENDER_TIMEOUT_S", "inf"),
        ("IMGCDN_RENDER_TIMEOUT_S", "20s"),
        ("IMGCDN_MAX_QUEUE", "-1"),
        ("IMGCDN_MAX_QUEUE", "100001"),
        ("IMGCDN_MAX_QUEUE", "5\nIMGCDN_EVIL=1"),
        ("IMGCDN_RENDER_THREADS", "0"),
        ("IMGCDN_RENDER_THREADS", "257"),
        ("IMGCDN_MEMORY_CACHE_BYTES", "-1"),
        ("IMGCDN_MEMORY_CACHE_BYTES", "256M"),
        ("IMGCDN_META_TTL_S", "-0.5"),
        ("IMGCDN_META_TTL_S", "3601"),
        ("IMGCDN_SHRINK_ON_LOAD", "slow"),
        ("IMGCDN_JPEG_PRESET", "tiny"),
        ("IMGCDN_AVIF_EFFORT", "10"),
        ("IMGCDN_AVIF_EFFORT", "-1"),
        ("IMGCDN_LOG_LEVEL", "verbose"),
    ],
)
def test_a_bad_value_stops_start_up_with_one_line_naming_the_variable(env, value):
    assert env in load_error({env: value})


def test_source_hosts_are_parsed_into_origins_once_at_start():
    raw = " https://cdn.example.com, *.example.com ,http://127.0.0.1:8000,,img.example.org:8443"
    env = {"IMGCDN_SOURCE_HOSTS": raw, "IMGCDN_ALLOW_PRIVATE_SOURCES": "1"}  # 127.0.0.1
    hosts = Settings.load(env).source_hosts
    assert [str(h) for h in hosts] == [
        "https://cdn.example.com:443",
        "https://*.example.com:443",
        "http://127.0.0.1:8000",
        "https://img.example.org:8443",
    ]
    assert Settings.load({"IMGCDN_SOURCE_HOSTS": ""}).source_hosts == ()


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        ("https://cdn.example.com,ftp://files.example.com", "ftp://files.example.com"),
        ("cdn.example.com/images", "cdn.example.com/images"),
        ("https://cdn.example.com:99999", "https://cdn.example.com:99999"),
        ("*.example.com, img.*.example.com", "img.*.example.com"),
        ("*.com", "*.com"),
        ("https://user:pw@cdn.example.com", "https://user:pw@cdn.example.com"),
    ],
)
def test_a_bad_source_hosts_entry_stops_start_up_naming_it(value, entry):
    message = load_error({"IMGCDN_SOURCE_HOSTS": value})
    assert message.startswith("IMGCDN_SOURCE_HOSTS=")
    assert f": {entry!r} " in message or f": {entry!r}:" in message


@pytest.mark.parametrize(
    "entry", ["http://10.0.0.5:8000", "http://127.0.0.1:8000", "https://[::1]", "169.254.169.254"]
)
def test_a_non_public_address_in_source_hosts_stops_start_up(entry):
    # The SSRF guard refuses it whatever the list says: a 403 for every URL, found late.
    message = load_error({"IMGCDN_SOURCE_HOSTS": f"https://cdn.example.com,{entry}"})
    assert message.startswith("IMGCDN_SOURCE_HOSTS: ")
    assert "never reach" in message
    allowed = {"IMGCDN_SOURCE_HOSTS": entry, "IMGCDN_ALLOW_PRIVATE_SOURCES": "1"}
    assert len(Settings.load(allowed).source_hosts) == 1  # the test suite's own origins


def test_the_source_deadline_leaves_room_under_a_clients_10_s():
    # Many clients and proxies give up at 10 s; the upload still has to check and store.
    assert Settings().source_timeout_s == 8.0
    assert "| `IMGCDN_SOURCE_TIMEOUT_S` | `8` |" in settings_table()


def test_s3_storage_takes_a_bucket_and_an_optional_prefix():
    assert Settings.load({"IMGCDN_STORAGE": "s3://images/prod/"}).storage == "s3://images/prod"
    assert Settings.load({"IMGCDN_STORAGE": "s3://images"}).storage == "s3://images"


@pytest.mark.parametrize("env", ["IMGCDN_FOO", "IMGCDN_MAX_OUTPUT_WIDTH", "IMGCDN_data_dir"])
def test_an_unknown_imgcdn_variable_is_refused_by_name(env):
    message = load_error({env: "1"})
    assert message.startswith(env)
    assert "unknown setting" in message


def test_the_first_bad_variable_is_the_one_named():
    message = load_error({"IMGCDN_MAX_QUEUE": "x", "IMGCDN_MAX_FRAMES": "y"})
    assert ("IMGCDN_MAX_QUEUE" in message) != ("IMGCDN_MAX_FRAMES" in message)


def test_a_bad_admin_token_list_is_not_echoed_in_the_error():
    good = "a-perfectly-good-admin-credential"
    message = load_error({"IMGCDN_ADMIN_TOKENS": f"{good},short"})
    assert "IMGCDN_ADMIN_TOKENS" in message
    assert good not in message


# --- the config file -----------------------------------------------------------------------


def test_a_config_file_of_key_value_lines_is_read(tmp_path):
    config = write_config(
        tmp_path,
        "# limits for the staging box\n"
        "\n"
        "IMGCDN_MAX_QUEUE=7\n"
        "  IMGCDN_LOG_LEVEL = warning  \n"
        'IMGCDN_DATA_DIR="/srv/img data"\n'
        "IMGCDN_JPEG_PRESET='small'\n",
    )
    s = Settings.load({}, config)
    assert s.max_queue == 7
    assert s.log_level == "warning"
    assert s.data_dir == Path("/srv/img data")
    assert s.jpeg_preset == "small"


def test_the_environment_overrides_the_config_file(tmp_path):
    config = write_config(tmp_path, "IMGCDN_MAX_QUEUE=7\nIMGCDN_MAX_FRAMES=9\n")
    s = Settings.load({"IMGCDN_MAX_QUEUE": "3"}, config)
    assert (s.max_queue, s.max_frames) == (3, 9)


def test_a_good_environment_value_hides_a_bad_one_in_the_config_file(tmp_path):
    config = write_config(tmp_path, "IMGCDN_MAX_QUEUE=lots\n")
    assert Settings.load({"IMGCDN_MAX_QUEUE": "3"}, config).max_queue == 3


def test_a_bad_value_in_the_config_file_names_the_variable(tmp_path):
    config = write_config(tmp_path, "IMGCDN_MAX_FRAMES=0\n")
    assert "IMGCDN_MAX_FRAMES" in load_error({}, config)


def test_an_unknown_key_in_the_config_file_is_refused_by_name(tmp_path):
    config = write_config(tmp_path, "IMGCDN_MAX_QUEUE=3\nIMGCDN_TYPO=1\n")
    assert "IMGCDN_TYPO" in load_error({}, config)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("IMGCDN_MAX_QUEUE 7\n", 1),
        ("# comment\n\nIMGCDN_MAX_QUEUE=7\njust some words\n", 4),
    ],
)
def test_a_malformed_config_line_names_file_and_line(tmp_path, text, line):
    config = write_config(tmp_path, text)
    assert f"{config}:{line}" in load_error({}, config)


def test_a_config_line_without_a_key_names_file_and_line(tmp_path):
    config = write_config(tmp_path, "IMGCDN_MAX_QUEUE=7\n=5\n")
    assert f"{config}:2" in load_error({}, config)


def test_a_missing_config_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nope.conf"
    assert str(missing) in load_error({}, missing)


# --- the settings table --------------------------------------------------------------------


def test_every_setting_has_an_imgcdn_variable():
    assert set(FIELDS) == {f.name for f in fields(Settings)}
    assert all(spec.env.startswith("IMGCDN_") for spec in FIELDS.values())
    assert len({spec.env for spec in FIELDS.values()}) == len(FIELDS)


def test_the_settings_table_lists_every_imgcdn_variable_once():
    rows = settings_table().splitlines()
    assert rows[:2] == ["| variable | default | meaning |", "|---|---|---|"]
    listed = [row.split("`")[1] for row in rows[2:]]
    assert sorted(listed) == sorted(spec.env for spec in FIELDS.values())


@pytest.mark.parametrize(
    "env",
    [
        "IMGCDN_DATA_DIR",
        "IMGCDN_STORAGE",
        "IMGCDN_ADMIN_TOKENS",
        "IMGCDN_MAX_SOURCE_BYTES",
        "IMGCDN_MAX_SOURCE_PIXELS",
        "IMGCDN_MAX_OUTPUT_SIDE",
        "IMGCDN_MAX_OUTPUT_PIXELS",
        "IMGCDN_MAX_FRAMES",
        "IMGCDN_RENDER_TIMEOUT_S",
        "IMGCDN_MAX_QUEUE",
    ],
)
def test_the_settings_table_has_the_spec_variables(env):
    assert f"| `{env}` |" in settings_table()


def load_message(environ: dict[str, str]) -> str:
    """The SettingsError message, or "" when the environment loads."""
    try:
        Settings.load(environ)
    except SettingsError as exc:
        return str(exc)
    return ""


def test_every_variable_in_the_table_is_accepted_by_the_loader():
    for row in settings_table().splitlines()[2:]:
        env = row.split("`")[1]
        assert "unknown setting" not in load_message({env: "x"}), env


@pytest.mark.parametrize(
    ("env", "default"),
    [
        ("IMGCDN_DATA_DIR", "`imgcdn-data`"),
        ("IMGCDN_STORAGE", "`file`"),
        ("IMGCDN_ADMIN_TOKENS", "(empty)"),
        ("IMGCDN_MAX_OUTPUT_SIDE", "`8192`"),
        ("IMGCDN_MAX_SOURCE_BYTES", f"`{50 * MIB}`"),
        ("IMGCDN_RENDER_THREADS", "2 x cores"),
        ("IMGCDN_SHRINK_ON_LOAD", "`fast`"),
        ("IMGCDN_VARIANT_STORE", "`1`"),
        ("IMGCDN_S3_TIMEOUT_S", "`5`"),
    ],
)
def test_the_settings_table_shows_each_default(env, default):
    # Values in code style, as the variable is written; words for what is not a value.
    assert f"| `{env}` | {default} |" in settings_table()
