"""The real AI SDKs, streaming through `dlproxy run` (reverse mode, the sidecar setup) from a local upstream that
streams a model reply a few characters per event.

Clean replies arrive intact. A reply carrying a valid token split over many events ends, for the SDK, with an
error raised from the API's own error event: the text the application received holds at most a proper head of the
token's public prefix ("gh" of "ghp_"), never a byte past it, and the upstream connection was closed (it stopped
generating).
"""

from __future__ import annotations

import re

import anthropic
import httpx
import openai
import pytest
from sse_upstream import StreamingUpstream, start_reverse

from conftest import GHO, GHP
from stream_support import assert_cut_at_a_head

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CLEAN = ("Here is a haiku about proxies:\n\nBytes pass through the gate,\nnothing secret slips between —\n"
         "the stream flows on, clean.")
BEFORE = "Of course. The token from your config is "
LEAKY = BEFORE + GHP + " and it has repo scope. " + "More words follow. " * 30


@pytest.fixture(scope="module")
def sdk_upstream():
    server = StreamingUpstream().start()
    yield server
    server.shutdown()


@pytest.fixture
def up(sdk_upstream) -> StreamingUpstream:
    sdk_upstream.reset()
    return sdk_upstream


@pytest.fixture
def sidecar(start_proxy, sdk_upstream):
    return start_reverse(start_proxy, sdk_upstream.url, name="sdks-reverse")


def oai(proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test-not-real", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=30))


def claude(proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test-not-real", max_retries=0)


def chat_text(client, collected: list[str]) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                            stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            collected.append(chunk.choices[0].delta.content)


def responses_text(client, collected: list[str]) -> None:
    with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                collected.append(event.delta)


def anthropic_text(client, collected: list[str]) -> None:
    with client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=512,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        for text in stream.text_stream:
            collected.append(text)


# --- OpenAI ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [chat_text, responses_text], ids=["chat.completions", "responses"])
def test_openai_sdk_clean_stream_arrives_intact(sidecar, up, api):
    up.script(CLEAN, chars=3, delay=0.001)
    got: list[str] = []
    api(oai(sidecar), got)
    assert "".join(got) == CLEAN
    assert len(got) > 20  # it really streamed in pieces


@pytest.mark.parametrize("api", [chat_text, responses_text], ids=["chat.completions", "responses"])
def test_openai_sdk_sees_an_error_within_the_public_prefix(sidecar, up, api):
    up.script(LEAKY, chars=3, delay=0.005)
    mark = sidecar.mark()
    got: list[str] = []
    with pytest.raises(openai.APIError) as e:
        api(oai(sidecar), got)
    text = "".join(got)
    assert_cut_at_a_head(text, BEFORE)  # at most "ghp" of the token: nothing past its public prefix
    assert "GitHub Personal Access Token" in e.value.message and "incident" in e.value.message
    assert e.value.body["type"] == "dlp_violation" and e.value.body["code"] == "credential_detected"
    assert up.aborted.wait(5) and not up.completed.is_set()
    (incident,) = sidecar.incidents(since=mark, wait=5)
    assert incident["incident_id"] == e.value.body["incident_id"]
    sidecar.assert_no_leak(GHP)


def test_openai_sdk_gets_the_redacted_reply(sidecar, up):
    up.script(f"Use {GHO} for the API.", chars=2)
    got: list[str] = []
    chat_text(oai(sidecar), got)
    # a head of "gho_" that went out in its own delta stays; the marker replaces the rest of the token
    assert re.fullmatch(r"Use (g|gh|gho)?\[REDACTED:github-oauth\] for the API\.", "".join(got)), got


# --- Anthropic --------------------------------------------------------------------------------------------------------


def test_anthropic_sdk_clean_stream_arrives_intact(sidecar, up):
    up.script(CLEAN, chars=4, delay=0.001)
    got: list[str] = []
    anthropic_text(claude(sidecar), got)
    assert "".join(got) == CLEAN and len(got) > 20


def test_anthropic_sdk_sees_an_error_event_within_the_public_prefix(sidecar, up):
    up.script(LEAKY, chars=2, delay=0.005)
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as e:
        anthropic_text(claude(sidecar), got)
    text = "".join(got)
    assert_cut_at_a_head(text, BEFORE)  # at most "ghp" of the token: nothing past its public prefix
    body = e.value.body
    assert body["type"] == "error" and body["error"]["type"] == "dlp_violation"
    assert "GitHub Personal Access Token" in body["error"]["message"]
    assert up.aborted.wait(5) and not up.completed.is_set()
    sidecar.assert_no_leak(GHP)
