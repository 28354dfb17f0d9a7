"""Settings read from the environment as the README documents them (GRADQ_*)."""

import pytest

from settings import Settings


def tokens_from_environment(monkeypatch, value: str) -> list[str]:
    monkeypatch.setenv("GRADQ_API_TOKENS", value)
    return [token.get_secret_value() for token in Settings(_env_file=None).api_tokens]


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("tok1,tok2", ["tok1", "tok2"]),
        ("tok1", ["tok1"]),
        (" tok1 , tok2 ,", ["tok1", "tok2"]),
        ("", []),
        ('["tok1", "tok2"]', ["tok1", "tok2"]),
    ],
)
def test_api_tokens_come_from_the_environment_comma_separated_or_as_a_json_list(
    monkeypatch, value, tokens
):
    assert tokens_from_environment(monkeypatch, value) == tokens


def test_api_tokens_come_from_a_dotenv_file_comma_separated(monkeypatch, tmp_path):
    monkeypatch.delenv("GRADQ_API_TOKENS", raising=False)
    (tmp_path / ".env").write_text("GRADQ_API_TOKENS=tok1,tok2\n")

    settings = Settings(_env_file=tmp_path / ".env")

    assert [token.get_secret_value() for token in settings.api_tokens] == ["tok1", "tok2"]


def test_api_tokens_are_never_shown_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("GRADQ_API_TOKENS", "tok1,tok2")

    assert "tok1" not in repr(Settings(_env_file=None))


@pytest.mark.parametrize("value", ["local", "mlflow"])
def test_the_dataset_store_comes_from_the_environment(monkeypatch, value):
    monkeypatch.setenv("GRADQ_DATASET_STORE", value)
    assert Settings(_env_file=None).dataset_store == value


def test_an_unknown_dataset_store_stops_the_process_naming_the_variable(monkeypatch):
    monkeypatch.setenv("GRADQ_DATASET_STORE", "nfs")
    with pytest.raises(
        ValueError, match="GRADQ_DATASET_STORE must be 'local' or 'mlflow', not 'nfs'"
    ):
        Settings(_env_file=None)
