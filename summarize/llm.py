"""A minimal client for any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM,
llama.cpp, Ollama, LiteLLM …), over httpx.

It does one thing: send messages, ask for JSON that follows a schema, and return the assistant's
text. Whether that text is any good is :mod:`summarize.grounding`'s business, not this module's.

Conventions:

* Off unless configured: :meth:`LLMConfig.from_settings` returns ``None`` when
  ``WARROOM_LLM_BASE_URL`` is empty, and nothing is ever sent.
* The base URL ends in ``/v1`` (as in the OpenAI SDKs); ``/chat/completions`` is appended.
* Transient failures — timeouts, connection errors, 429 and 5xx — are retried ``retries`` times
  with exponential back-off; a ``Retry-After`` header is honoured, capped at ``max_backoff_s`` so a
  hostile or confused server cannot park the caller for an hour. Other 4xx are the request's fault
  and are not retried.
* Every failure is an :class:`LLMError` with a short ``reason`` ("timeout", "connection",
  "http_429", "http_500", "bad_response", "refused") that callers record verbatim.
* The API key travels only in the ``Authorization`` header: it is kept out of ``repr``, and any
  error text (which may quote a server's response body) has it scrubbed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from warroom.errors import WarroomError
from warroom.retry import parse_retry_after

if TYPE_CHECKING:
    from warroom.config import Settings

__all__ = ["ChatClient", "LLMConfig", "LLMError"]

log = logging.getLogger("warroom.summarize.llm")

_BODY_CHARS = 200  # how much of an error response body an LLMError quotes


class LLMError(WarroomError):
    """The LLM endpoint could not produce an answer; ``reason`` is short and stable for records.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self, message: str, reason: str, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """Where and how to reach the model. ``api_key`` is empty when the endpoint needs none."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 60.0
    retries: int = 2
    backoff_s: float = 0.5  # first back-off; doubles per retry
    max_backoff_s: float = 10.0  # cap of any wait, Retry-After included

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMConfig | None:
        """The configured endpoint, or ``None`` when ``llm_base_url`` is empty (LLM off)."""
        if not settings.llm_base_url:
            return None
        return cls(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            timeout_s=settings.llm_timeout_s,
            retries=settings.llm_retries,
        )

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


class ChatClient:
    """Sends chat completions requests; one instance per configuration, safe to reuse.

    ``sleep`` is injectable so tests can observe back-off without waiting it out.
    """

    def __init__(self, config: LLMConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep

    @property
    def model(self) -> str:
        return self.config.model

    def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        response_schema: Mapping[str, Any],
        *,
        schema_name: str = "answer",
    ) -> str:
        """The assistant message's content for ``messages``, constrained to ``response_schema``.

        Raises :class:`LLMError` once retries are spent, or at once for a non-retryable failure.
        """
        body = {
            "model": self.config.model,
            "messages": [dict(m) for m in messages],
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": response_schema, "strict": True},
            },
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        content = json.dumps(body).encode()
        attempt = 0
        with httpx.Client(timeout=self.config.timeout_s, follow_redirects=False) as http:
            while True:
                try:
                    return self._once(http, content, headers)
                except LLMError as exc:
                    if not exc.retryable or attempt >= self.config.retries:
                        raise
                    wait = exc.retry_after
                    if wait is None:
                        wait = self.config.backoff_s * 2**attempt
                    delay = min(self.config.max_backoff_s, wait)
                    attempt += 1
                    log.warning(
                        "LLM request failed, retrying",
                        extra={"reason": exc.reason, "retry": attempt, "delay_s": round(delay, 3)},
                    )
                    self._sleep(delay)

    def _once(self, http: httpx.Client, content: bytes, headers: Mapping[str, str]) -> str:
        url = self.config.url
        try:
            response = http.post(url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise self._error(
                f"no answer from {_safe_url(url)} within {self.config.timeout_s:g} s",
                "timeout",
                retryable=True,
            ) from exc
        except (httpx.TransportError, OSError) as exc:
            raise self._error(
                f"cannot reach {_safe_url(url)}: {type(exc).__name__}: {exc}", "connection", retryable=True
            ) from exc
        code = response.status_code
        if not response.is_success:
            excerpt = response.text[:_BODY_CHARS].strip()
            raise self._error(
                f"{_safe_url(url)} answered HTTP {code}" + (f": {excerpt}" if excerpt else ""),
                f"http_{code}",
                retryable=code == 429 or code >= 500,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return self._content(response)

    def _content(self, response: httpx.Response) -> str:
        """The first choice's message content; a refusal or an odd envelope is an error."""
        try:
            data = response.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise self._error(
                f"not a chat completion: {response.text[:_BODY_CHARS]!r}", "bad_response"
            ) from exc
        if not isinstance(message, Mapping):
            raise self._error("not a chat completion: choices[0].message is not an object", "bad_response")
        if message.get("refusal"):
            raise self._error(f"the model refused: {str(message['refusal'])[:_BODY_CHARS]}", "refused")
        content = message.get("content")
        if not isinstance(content, str):
            raise self._error("the answer has no text content", "bad_response")
        return content

    def _error(
        self, message: str, reason: str, retryable: bool = False, retry_after: float | None = None
    ) -> LLMError:
        """An LLMError whose text cannot carry the API key (a server may echo request headers)."""
        key = self.config.api_key
        if key:
            message = message.replace(key, "***")
        return LLMError(f"LLM: {message}", reason, retryable, retry_after)


def _safe_url(url: str) -> str:
    """``url`` without user:password, which some gateways put in the base URL."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
