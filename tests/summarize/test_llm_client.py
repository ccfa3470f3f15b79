"""The OpenAI-compatible client against a real HTTP server process: request shape, retries with
back-off on 429/5xx/timeouts, no retry on other 4xx, error reasons, and the API key kept secret."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from summarize.llm import ChatClient, LLMConfig, LLMError
from tests.summarize.fake_openai import FakeOpenAI
from warroom.config import load_settings

API_KEY = "sk-test-0123456789abcdef"
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
MESSAGES = [{"role": "system", "content": "rules"}, {"role": "user", "content": "data"}]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tmp_path_factory.mktemp("openai"), api_key=API_KEY) as server:
        yield server


def client(
    base_url: str, retries: int = 2, timeout_s: float = 2.0, key: str = API_KEY
) -> tuple[ChatClient, list[float]]:
    """A client whose back-off sleeps are recorded instead of waited out."""
    slept: list[float] = []
    config = LLMConfig(base_url, "gpt-test", key, timeout_s, retries, backoff_s=0.25, max_backoff_s=5.0)
    return ChatClient(config, sleep=slept.append), slept


def test_sends_an_openai_chat_request_and_returns_the_content(fake: FakeOpenAI) -> None:
    url = fake.scenario({"content": '{"ok": true}'})
    chat, slept = client(url)
    assert chat.complete(MESSAGES, SCHEMA, schema_name="probe") == '{"ok": true}'
    [request] = fake.requests(url)
    assert request["path"].endswith("/v1/chat/completions")
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == {
        "model": "gpt-test",
        "messages": MESSAGES,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "probe", "schema": SCHEMA, "strict": True},
        },
    }
    assert slept == []


def test_429_waits_as_long_as_retry_after_says_then_succeeds(fake: FakeOpenAI) -> None:
    url = fake.scenario(
        {"status": 429, "headers": {"Retry-After": "3"}, "body": '{"error": {"message": "rate limited"}}'},
        {"content": "fine"},
    )
    chat, slept = client(url)
    assert chat.complete(MESSAGES, SCHEMA) == "fine"
    assert slept == [3.0] and len(fake.requests(url)) == 2


def test_retry_after_is_capped(fake: FakeOpenAI) -> None:
    url = fake.scenario({"status": 503, "headers": {"Retry-After": "3600"}, "body": ""}, {"content": "fine"})
    chat, slept = client(url)
    assert chat.complete(MESSAGES, SCHEMA) == "fine"
    assert slept == [5.0]


def test_5xx_is_retried_with_exponential_back_off(fake: FakeOpenAI) -> None:
    url = fake.scenario({"status": 500, "body": "boom"}, {"status": 502, "body": "boom"}, {"content": "fine"})
    chat, slept = client(url, retries=2)
    assert chat.complete(MESSAGES, SCHEMA) == "fine"
    assert slept == [0.25, 0.5] and len(fake.requests(url)) == 3


def test_5xx_beyond_the_retries_fails_with_the_status_as_reason(fake: FakeOpenAI) -> None:
    url = fake.scenario({"status": 500, "body": "internal error"})
    chat, _ = client(url, retries=2)
    with pytest.raises(LLMError) as caught:
        chat.complete(MESSAGES, SCHEMA)
    assert caught.value.reason == "http_500" and "internal error" in str(caught.value)
    assert len(fake.requests(url)) == 3


def test_other_4xx_are_not_retried(fake: FakeOpenAI) -> None:
    url = fake.scenario({"status": 400, "body": '{"error": {"message": "bad schema"}}'})
    chat, slept = client(url)
    with pytest.raises(LLMError) as caught:
        chat.complete(MESSAGES, SCHEMA)
    assert caught.value.reason == "http_400" and not caught.value.retryable
    assert len(fake.requests(url)) == 1 and slept == []


def test_a_wrong_key_is_refused_and_never_shown(fake: FakeOpenAI) -> None:
    url = fake.scenario({"content": "unreachable"})
    wrong = "sk-wrong-key-fedcba9876543210"
    chat, _ = client(url, key=wrong)
    with pytest.raises(LLMError) as caught:
        chat.complete(MESSAGES, SCHEMA)
    assert caught.value.reason == "http_401"
    assert wrong not in str(caught.value) and wrong not in repr(chat.config)
    assert fake.requests(url)[0]["headers"]["Authorization"] == f"Bearer {wrong}"


def test_a_server_echoing_the_key_does_not_put_it_in_the_error(fake: FakeOpenAI) -> None:
    url = fake.scenario({"status": 502, "body": f"upstream refused Authorization: Bearer {API_KEY}"})
    chat, _ = client(url, retries=0)
    with pytest.raises(LLMError) as caught:
        chat.complete(MESSAGES, SCHEMA)
    assert API_KEY not in str(caught.value) and "Bearer ***" in str(caught.value)


def test_a_timeout_is_retried_then_fails_as_timeout(fake: FakeOpenAI) -> None:
    url = fake.scenario({"delay": 1.5, "content": "too late"})
    chat, slept = client(url, retries=1, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        chat.complete(MESSAGES, SCHEMA)
    assert caught.value.reason == "timeout" and caught.value.retryable
    assert time.monotonic() - started < 1.4  # gave up on each request after 0.3 s
    assert len(fake.requests(url)) == 2 and slept == [0.25]


def test_an_unreachable_endpoint_fails_as_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chat, slept = client(f"http://127.0.0.1:{port}/v1", retries=1)
    with pytest.raises(LLMError) as caught:
        chat.complete(MESSAGES, SCHEMA)
    assert caught.value.reason == "connection" and slept == [0.25]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<html>gateway says hi</html>", "bad_response"),
        (json.dumps({"choices": []}), "bad_response"),
        (json.dumps({"choices": [{"message": {"role": "assistant", "content": None}}]}), "bad_response"),
        (
            json.dumps({"choices": [{"message": {"content": None, "refusal": "I can't help with that."}}]}),
            "refused",
        ),
    ],
)
def test_odd_answers_are_bad_responses_and_not_retried(fake: FakeOpenAI, body: str, reason: str) -> None:
    url = fake.scenario({"body": body})
    chat, _ = client(url)
    with pytest.raises(LLMError) as caught:
        chat.complete(MESSAGES, SCHEMA)
    assert caught.value.reason == reason and len(fake.requests(url)) == 1


def test_config_from_settings_is_off_unless_a_base_url_is_set(tmp_path: Path) -> None:
    assert LLMConfig.from_settings(load_settings(env={}, home=str(tmp_path))) is None
    settings = load_settings(
        env={"WARROOM_LLM_API_KEY": API_KEY},
        home=str(tmp_path),
        llm_base_url="http://llm.internal:8000/v1/",
        llm_model="qwen2.5-7b-instruct",
        llm_timeout_s=12,
        llm_retries=1,
    )
    config = LLMConfig.from_settings(settings)
    assert config is not None
    assert (config.model, config.api_key, config.timeout_s, config.retries) == (
        "qwen2.5-7b-instruct",
        API_KEY,
        12.0,
        1,
    )
    assert config.url == "http://llm.internal:8000/v1/chat/completions"
    assert API_KEY not in repr(config)
