"""Configuration (SPEC §11): a TOML file, MODELYARD_* variables winning, instances replacing
the defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelyard.config import Settings, load_settings
from modelyard.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"MODELYARD_DATA_DIR": str(tmp_path)})
    assert (s.host, s.port) == ("127.0.0.1", 8050)
    assert s.resolved_models_dir == tmp_path / "models"
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'modelyard.db'}"
    keys = [i.key for i in s.effective_instances()]
    assert keys == ["ollama/default", "lmstudio/default", "openai/default", "anthropic/default"]


def test_file_then_environment_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "modelyard.toml"
    cfg.write_text(
        'port = 9000\nmodels_dir = "/srv/models"\ndownload_concurrency = 3\n'
        '[[instances]]\nprovider = "llamacpp"\nid = "qwen-small"\nbase_url = "http://127.0.0.1:8081"\n'
        'managed = true\nmodel = "/srv/models/q.gguf"\nmode = "embed"\n'
    )
    env = {
        "MODELYARD_CONFIG": str(cfg),
        "MODELYARD_PORT": "9100",
        "MODELYARD_ALLOWED_HOSTS": "a.lan, b",
    }
    s = load_settings(env)
    assert s.port == 9100 and s.models_dir == Path("/srv/models") and s.download_concurrency == 3
    assert s.allowed_hosts == ["a.lan", "b"]
    [only] = s.effective_instances()  # instances in the file replace the defaults
    assert (only.key, only.managed, only.mode.value) == ("llamacpp/qwen-small", True, "embed")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("port = 'x'", "invalid setting port"),
        ("nonsense = 1", "invalid setting nonsense"),
        ("[[instances]]\nprovider = 'nope'\nid = 'a'\nbase_url = 'http://h'", "instances"),
        ("port = ", "not valid TOML"),
        ("[[instances]]\nprovider = 'ollama'\nid = 'a'\nbase_url = 'file:///x'", "base_url"),
        (
            "[[instances]]\nprovider = 'ollama'\nid = 'a'\nbase_url = 'http://127.0.0.1:1'\n"
            "[[instances]]\nprovider = 'ollama'\nid = 'a'\nbase_url = 'http://127.0.0.1:2'",
            "invalid setting instances: instance ollama/a is listed twice",
        ),
        ("log_level = 'loud'", "invalid setting log_level"),
        ("ip_allowlist = ['10.0.0.0/8', 'lan']", "'lan' is not an IP address or CIDR network"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings({"MODELYARD_CONFIG": str(cfg)})
    assert message in err.value.detail


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"MODELYARD_CONFIG": "/no/such/file.toml"})


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    missing = [name for name in Settings.model_fields if name not in documented]
    assert not missing, f"settings missing from docs/CONFIGURATION.md: {missing}"


def test_booleans_from_the_environment_are_read_or_refused() -> None:
    for raw, expected in [("off", False), ("0", False), ("No", False), ("yes", True), ("", True)]:
        assert load_settings({"MODELYARD_MONITOR": raw}).monitor is expected, raw
    with pytest.raises(ConfigError, match="invalid setting monitor"):
        load_settings({"MODELYARD_MONITOR": "maybe"})
    assert load_settings({"MODELYARD_LOG_LEVEL": "DEBUG"}).log_level == "debug"
