"""Tier-B structure validators: each accepts well-formed tokens and rejects broken structure, and none raises."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlproxy.engine import validators
from dlproxy.engine.profile import builtin_profile_path, load_profiles
from dlproxy.engine.validators import structural as s

STRUCTURAL = sorted(name for name in validators.names() if validators.get(name).kind == "structure"
                    and validators.get(name).func.__module__ == s.__name__)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jb(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def check(name: str, token: str, **params) -> bool:
    return validators.get(name)(token, **params)


# --- registry and safety -------------------------------------------------------------------------------------------


def test_structural_validators_are_registered_as_structure():
    expected = {"aws-access-key-id", "aws-bedrock-api-key", "openai-api-key", "anthropic-api-key", "google-api-key",
                "jwt", "github-stateless-installation-token", "pypi-macaroon", "nuget-api-key", "sentry-org-token",
                "grafana-cloud-token", "grafana-legacy-api-key", "atlassian-dc-token", "jfrog-reference-token",
                "heroku-api-key", "onepassword-service-account-token", "flyio-macaroon", "mapbox-secret-token",
                "private-key-pem"}
    assert expected <= set(STRUCTURAL)
    assert validators.get("pypi-macaroon").params == frozenset({"location"})
    assert validators.get("aws-access-key-id").params == frozenset({"prefix"})


@pytest.mark.parametrize("name", STRUCTURAL)
@pytest.mark.parametrize("junk", [None, b"bytes", 12345, "", "\x00" * 50, "é" * 40, "eyJ" + "A" * 5000])
def test_validators_return_false_on_junk_instead_of_raising(name, junk):
    assert validators.get(name).func(junk) is False


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(STRUCTURAL), token=st.text(max_size=400))
def test_validators_never_raise(name, token):
    assert validators.get(name).func(token) in (True, False)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(STRUCTURAL),
       token=st.text(alphabet=st.sampled_from("ABCDEFabcdef0123456789+/_-=.eyJ"), max_size=300))
def test_validators_never_raise_on_token_shaped_text(name, token):
    assert validators.get(name).func(token) in (True, False)


def test_profile_examples_pass_and_structural_entries_use_known_validators():
    """Every built-in entry that names a structural validator: its examples' tokens pass the validator."""
    profile = load_profiles([builtin_profile_path()])
    used = set()
    for entry in profile.entries:
        if not entry.checksum or entry.checksum not in STRUCTURAL:
            continue
        used.add(entry.checksum)
        params = dict(entry.checksum_params)
        for example in entry.examples:
            for prefix in entry.prefixes:
                rx = re.compile(f"(?:{entry.before or ''}){re.escape(prefix)}(?:{entry.pattern})", re.ASCII)
                m = rx.search(example)
                if m:
                    token = m.group("secret") if "secret" in rx.groupindex else m.group()
                    kwargs = {"prefix": prefix} if "prefix" in validators.get(entry.checksum).params else {}
                    assert check(entry.checksum, token, **kwargs, **params), entry.id
                    break
            else:
                pytest.fail(f"{entry.id}: example does not match its pattern")
    assert used == set(STRUCTURAL), set(STRUCTURAL) - used


# --- helpers ----------------------------------------------------------------------------------------------------------


def test_b64decode_is_strict():
    assert s.b64decode(b64(b"hello world")) == b"hello world"
    assert s.b64decode(b64(b"hello world").rstrip("=")) == b"hello world"
    assert s.b64decode(b64u(b"\xfb\xff\xfe")) == b"\xfb\xff\xfe"
    assert s.b64decode("ab+c-d__") is None  # mixed alphabets
    assert s.b64decode("abcde") is None  # 5 chars cannot be base64
    assert s.b64decode("ab*d") is None
    assert s.b64decode("ab=d") is None  # padding in the middle
    assert s.b64decode(b64u(b"\xfb\xff"), "std") is None


def test_der_sequence_body():
    assert s.der_sequence_body(b"\x30\x03\x02\x01\x00") == b"\x02\x01\x00"
    assert s.der_sequence_body(b"\x30\x81\x80" + b"\x00" * 128) == b"\x00" * 128
    assert s.der_sequence_body(b"\x31\x03\x02\x01\x00") is None  # SET
    assert s.der_sequence_body(b"\x30\x04\x02\x01\x00") is None  # length mismatch
    assert s.der_sequence_body(b"\x30\x81\x03\x02\x01\x00") is None  # long form for a short length
    assert s.der_sequence_body(b"\x30\x80\x02\x01\x00\x00\x00") is None  # indefinite length


# --- AWS ---------------------------------------------------------------------------------------------------------------


def aws_id(prefix: str, account: int | None, low: int = 0x1234567) -> str:
    first48 = (1 << 47) | (account << 7) | 0x55 if account is not None else 0x123456789AB
    bits = (first48 << 32) | low
    return prefix + base64.b32encode(bits.to_bytes(10, "big")).decode()


def test_aws_account_decode_public_vector():
    assert s.aws_account_id("ASIAY34FZKBOKMUTVV7A") == 609629065308  # docs/token-formats.md B1
    assert s.aws_account_id(aws_id("AKIA", 123456789012)) == 123456789012
    assert s.aws_account_id(aws_id("AKIA", None)) is None  # old generation encodes no account


def test_aws_access_key_id():
    assert check("aws-access-key-id", "ASIAY34FZKBOKMUTVV7A", prefix="ASIA")
    assert check("aws-access-key-id", aws_id("AKIA", 123456789012))
    assert check("aws-access-key-id", aws_id("AKIA", None))
    assert check("aws-access-key-id", "A3TX" + aws_id("AKIA", 1)[4:])
    assert not check("aws-access-key-id", aws_id("AKIA", 1_000_000_000_000))  # 13-digit account
    assert not check("aws-access-key-id", "AKIAIOSFODNN7EXAMPLE")  # documentation placeholder
    assert not check("aws-access-key-id", "AKIAY34FZKBOKMUTVV71")  # '1' is not base32
    assert not check("aws-access-key-id", "AKIAY34FZKBOKMUTVV7")  # 19 chars
    assert not check("aws-access-key-id", "AXIAY34FZKBOKMUTVV7A")  # unknown type
    assert not check("aws-access-key-id", "akiay34fzkbokmutvv7a")


def test_bedrock_api_keys():
    plain = b"BedrockAPIKey-abcd-at-123456789012:" + base64.b64encode(b"\x01" * 45)
    assert check("aws-bedrock-api-key", "ABSK" + b64(plain))
    assert not check("aws-bedrock-api-key", "ABSK" + b64(b"BedrockApiKey-" + plain[14:]))
    assert not check("aws-bedrock-api-key", "ABSK" + b64(b"BedrockAPIKey-\x00\xff" + b"x" * 60))  # binary
    assert not check("aws-bedrock-api-key", "ABSK" + b64(plain)[:-3] + "*==")  # bad base64
    url = b"bedrock.amazonaws.com/?Action=CallWithBearerToken&X-Amz-Date=20250101T000000Z&Version=1"
    assert check("aws-bedrock-api-key", "bedrock-api-key-" + b64(url))
    assert not check("aws-bedrock-api-key", "bedrock-api-key-" + b64(b"bedrock.amazonaws.co/x" + b"y" * 40))


# --- AI providers ------------------------------------------------------------------------------------------------------


def test_openai_api_key():
    half74, half58, half20 = "a_B-" * 18 + "xy", "Q9z-" * 14 + "ab", "Abc123" * 3 + "xy"
    for kind in ("sk-proj-", "sk-svcacct-", "sk-admin-"):
        assert check("openai-api-key", kind + half74 + "T3BlbkFJ" + half74)
        assert check("openai-api-key", kind + half58 + "T3BlbkFJ" + half58)
        assert not check("openai-api-key", kind + half74 + "T3BlbkFJ" + half58)  # unequal halves
        assert not check("openai-api-key", kind + half74 + "T3BlbkFJ" + half74[:-1])
    assert check("openai-api-key", "sk-" + half20 + "T3BlbkFJ" + half20)
    assert not check("openai-api-key", "sk-" + "a_b" + half20[3:] + "T3BlbkFJ" + half20)  # legacy is alphanumeric
    assert not check("openai-api-key", "sk-proj-" + half74 + "T3BlbkFj" + half74)  # no marker
    assert not check("openai-api-key", "sk-proj-" + half74 + "T3BlbkFJ" + half74[:66] + "T3BlbkFJ")
    assert not check("openai-api-key", "xk-proj-" + half74 + "T3BlbkFJ" + half74)


def test_anthropic_api_key():
    body = "abcDEF123_-" * 8 + "abcde"
    assert len(body) == 93
    assert check("anthropic-api-key", "sk-ant-api03-" + body + "AA")
    assert check("anthropic-api-key", "sk-ant-admin01-" + body + "AA")
    assert not check("anthropic-api-key", "sk-ant-api03-" + body + "AB")  # tail
    assert not check("anthropic-api-key", "sk-ant-api03-" + body[:-1] + "AA")  # length
    assert not check("anthropic-api-key", "sk-ant-api03-" + body[:-1] + "!AA")  # alphabet
    assert not check("anthropic-api-key", "sk-ant-api04-" + body + "AA")


def test_google_api_key_last_character_rule():
    body = "SyDLPTEST_abcdefghij-klmnopqrstuvw"
    assert len(body) == 34
    for last in "AEIMQUYcgkosw048":
        assert check("google-api-key", "AIza" + body + last)
    for last in "BDFHJZabdefhz12579_-":
        assert not check("google-api-key", "AIza" + body + last)
    assert not check("google-api-key", "AIza" + body)  # 38 chars
    assert not check("google-api-key", "AIzb" + body + "A")


# --- JWT -----------------------------------------------------------------------------------------------------------------


def make_jwt(header: dict, payload: dict, sig: bytes | None = None) -> str:
    h, p = b64u(jb(header)), b64u(jb(payload))
    if sig is None:
        sig = hmac.new(b"k", f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64u(sig)}"


def test_jwt_accepts_signed_tokens():
    assert check("jwt", make_jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "x"}))
    assert check("jwt", make_jwt({"alg": "RS256", "kid": "k1"}, {"iss": "https://i"}, sig=b"\x01" * 256))


@pytest.mark.parametrize("token", [
    make_jwt({"typ": "JWT"}, {"sub": "x"}),  # header without alg
    make_jwt({"alg": 256}, {"sub": "x"}),  # alg not a string
    make_jwt({"alg": "none"}, {"sub": "x"}, sig=b""),  # unsigned
    make_jwt({"alg": "HS256"}, {"sub": "x"}, sig=b"short"),  # signature too short
    b64u(b'["alg","HS256"]') + "." + b64u(jb({"sub": "x"})) + "." + b64u(b"s" * 32),  # header not an object
    b64u(jb({"alg": "HS256"})) + ".eyJzdWIiOiJ4Ig." + b64u(b"s" * 32),  # payload is not valid JSON
    b64u(jb({"alg": "HS256"})) + "." + b64u(b"plain text payload") + "." + b64u(b"s" * 32),
    b64u(jb({"alg": "HS256"})) + "!." + b64u(jb({"sub": "x"})) + "." + b64u(b"s" * 32),  # bad base64
    make_jwt({"alg": "HS256"}, {"sub": "x"}) + ".extra",  # JWE-like 4 segments
])
def test_jwt_rejects_broken_structure(token):
    assert not check("jwt", token)


def test_jwt_alg_none_only_when_allowed():
    token = make_jwt({"alg": "none"}, {"sub": "x"}, sig=b"")
    assert check("jwt", token, allow_none=True)
    assert not check("jwt", token)


def test_github_stateless_installation_token():
    good = make_jwt({"alg": "RS256"}, {"iss": "123"}, sig=b"\x02" * 256)
    assert check("github-stateless-installation-token", "ghs_123456_" + good)
    assert not check("github-stateless-installation-token", "ghs_0123_" + good)
    assert not check("github-stateless-installation-token", "ghs_12a_" + good)
    assert not check("github-stateless-installation-token", "ghs_123_" + make_jwt({"typ": "JWT"}, {"iss": "123"}))
    assert not check("github-stateless-installation-token", "ghs_" + "A" * 36)


# --- package registries ----------------------------------------------------------------------------------------------


def macaroon(location: bytes, caveats, sig: bytes, trailing: bytes = b"", ident: bytes = b"0" * 36) -> str:
    def field(t, data):
        return bytes([t, len(data)]) + data

    data = b"\x02" + field(1, location) + field(2, ident) + b"\x00"
    for c in caveats:
        data += field(2, c) + b"\x00"
    return "pypi-" + b64u(data + b"\x00" + bytes([6, len(sig)]) + sig + trailing)


def test_pypi_macaroon():
    cav = jb({"version": 1, "permissions": "user"})
    good = macaroon(b"pypi.org", [cav], b"\x07" * 32)
    assert good.startswith("pypi-AgEIcHlwaS5vcmc")  # base64 of 02 01 08 "pypi.org"
    assert check("pypi-macaroon", good)
    assert check("pypi-macaroon", macaroon(b"pypi.org", [], b"\x07" * 32))
    test = macaroon(b"test.pypi.org", [cav], b"\x07" * 32)
    assert test.startswith("pypi-AgENdGVzdC5weXBpLm9yZw")
    assert check("pypi-macaroon", test, location="test.pypi.org")
    assert not check("pypi-macaroon", test)  # wrong location for this entry
    assert not check("pypi-macaroon", macaroon(b"pypi.org", [cav], b"\x07" * 31))  # 31-byte signature
    assert not check("pypi-macaroon", macaroon(b"pypi.org", [b"not json"], b"\x07" * 32))
    assert not check("pypi-macaroon", macaroon(b"pypi.org", [cav], b"\x07" * 32, trailing=b"\x00"))
    assert not check("pypi-macaroon", macaroon(b"pypi.org", [cav], b"\x07" * 32, ident=b""))
    assert not check("pypi-macaroon", good[:-10])  # truncated: varint/field runs off the end
    assert not check("pypi-macaroon", "pypi-" + b64u(b"\x01" + base64.urlsafe_b64decode(good[5:] + "==")[1:]))


def nuget_key(ident: bytes, rand: bytes = bytes(range(1, 17))) -> str:
    head = base64.b32encode(b"v4" + ident).decode().rstrip("=")
    tail = base64.b32encode(rand).decode().rstrip("=")
    return (head + tail).lower()


def test_nuget_api_key():
    key = nuget_key(bytes(range(10, 20)))
    assert key.startswith("oy2") and len(key) == 46
    assert check("nuget-api-key", key)
    assert not check("nuget-api-key", nuget_key(bytes(range(10, 19)) + b"\x00"))  # zero id byte
    assert not check("nuget-api-key", key[:19] + "b" + key[20:])  # padding bits of the id part
    assert not check("nuget-api-key", key[:45] + "b")  # padding bits of the random part
    assert not check("nuget-api-key", key.upper())
    assert not check("nuget-api-key", key[:-1])


# --- platforms ---------------------------------------------------------------------------------------------------------


def test_sentry_org_token():
    claims = {"iat": 1.5, "url": "https://sentry.io", "region_url": "https://us.sentry.io", "org": "o"}
    secret = b64(b"\x05" * 32).rstrip("=")
    assert check("sentry-org-token", "sntrys_" + b64(jb(claims)) + "_" + secret)
    assert not check("sentry-org-token", "sntrys_" + b64(jb({"iat": 1, "url": "u"})) + "_" + secret)  # no org
    assert not check("sentry-org-token", "sntrys_" + b64(jb(claims)) + "_" + secret[:-1])
    assert not check("sentry-org-token", "sntrys_" + b64(b"not json at all") + "_" + secret)
    assert not check("sentry-org-token", "sntrys_" + b64(jb(claims)) + secret)


def test_grafana_tokens():
    assert check("grafana-cloud-token", "glc_" + b64(jb({"o": "1", "n": "w", "k": "K", "m": {"r": "us"}})))
    assert not check("grafana-cloud-token", "glc_" + b64(jb({"o": "1", "n": "w"})))
    assert not check("grafana-cloud-token", "glc_" + b64(jb({"o": "1", "n": "w", "k": "K", "m": "us"})))
    assert not check("grafana-cloud-token", "glc_" + b64(jb({"o": "1", "n": "w", "k": ""})))
    assert check("grafana-legacy-api-key", b64(jb({"k": "abc", "n": "viewer", "id": 1})))
    assert not check("grafana-legacy-api-key", b64(jb({"k": "abc", "n": "viewer", "id": "1"})))
    assert not check("grafana-legacy-api-key", b64(jb({"k": "abc", "n": "viewer", "id": True})))
    assert not check("grafana-legacy-api-key", b64(jb({"k": "abc", "id": 1})))


def test_atlassian_dc_token():
    good = b64(b"123456789012:" + b"\x09" * 20)
    assert check("atlassian-dc-token", "BBDC-" + good)
    assert check("atlassian-dc-token", good)  # the prefix-less Jira/Confluence DC PAT body
    assert not check("atlassian-dc-token", "BBDC-" + b64(b"12345678901X:" + b"\x09" * 20))
    assert not check("atlassian-dc-token", "BBDC-" + b64(b"123456789012;" + b"\x09" * 20))
    assert not check("atlassian-dc-token", "BBDC-" + good[:-1])


def test_jfrog_reference_token():
    good = b64(b"reftkn:01:1893456000:" + b"DLPTESTabcdefghijklmnopqrst")
    assert good.startswith("cmVmdGtu") and len(good) == 64
    assert check("jfrog-reference-token", good)
    assert not check("jfrog-reference-token", b64(b"reftkn:02:1893456000:" + b"DLPTESTabcdefghijklmnopqrst"))
    assert not check("jfrog-reference-token", b64(b"reftkn:01:1893456000:" + b"\x00" * 27))


def test_heroku_api_key():
    good = "HRKU-AA" + "a" * 42 + "_____w" + "b" * 10
    assert len(good) == 65
    assert check("heroku-api-key", good)
    assert not check("heroku-api-key", "HRKU-AA" + "a" * 42 + "____Aw" + "b" * 10)
    assert not check("heroku-api-key", good[:-1])


def test_onepassword_service_account_token():
    claims = {"signInAddress": "x.1password.com", "email": "e", "secretKey": "A3-X", "muk": {"k": "v"}, "srpX": "00"}
    assert check("onepassword-service-account-token", "ops_" + b64(jb(claims)).rstrip("="))
    assert check("onepassword-service-account-token", "ops_" + b64u(jb(claims)))
    assert not check("onepassword-service-account-token",
                     "ops_" + b64(jb({k: v for k, v in claims.items() if k != "muk"})))
    assert not check("onepassword-service-account-token", "ops_" + b64(jb(claims))[:-12])


def test_flyio_macaroon():
    body = bytes([0x94, 0x93, 0xC4, 0x10]) + b"\x01" * 60
    assert check("flyio-macaroon", "fm2_" + b64(body))
    assert check("flyio-macaroon", "fm1r_" + b64(body))
    assert not check("flyio-macaroon", "fm2_" + b64(bytes([0x80]) + body[1:]))  # a map, not an array
    assert not check("flyio-macaroon", "fm2_" + b64(body[:20]))  # too short to be a macaroon
    assert not check("flyio-macaroon", "fm2_" + b64(body) + "*")


def test_mapbox_secret_token():
    good = "sk." + b64u(jb({"u": "user", "a": "ck123"})) + ".abcdefghijklmnopqrstuv"
    assert check("mapbox-secret-token", good)
    assert not check("mapbox-secret-token", "sk." + b64u(jb({"u": "user"})) + ".abcdefghijklmnopqrstuv")
    assert not check("mapbox-secret-token", good[:-1])
    assert not check("mapbox-secret-token", "pk." + good[3:])


# --- PEM -----------------------------------------------------------------------------------------------------------------


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + content


RSA = der(0x30, b"".join(der(0x02, v) for v in [b"\x00", b"\x00\xc1" + b"\x11" * 127, b"\x01\x00\x01",
                                                  b"\x22" * 128, b"\x33" * 64, b"\x44" * 64, b"\x55" * 64,
                                                  b"\x66" * 64, b"\x77" * 64]))


def pem(label: str, body: bytes, nl: str = "\n", headers: str = "", end: str | None = None) -> str:
    text = base64.b64encode(body).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {label}-----{nl}{headers}" + nl.join(lines) + f"{nl}-----END {end or label}-----"


def test_pem_private_keys_are_accepted():
    assert check("private-key-pem", pem("RSA PRIVATE KEY", RSA))
    assert check("private-key-pem", pem("RSA PRIVATE KEY", RSA, nl="\r\n"))
    assert check("private-key-pem", pem("RSA PRIVATE KEY", RSA, nl="\\n"))  # JSON-escaped newlines
    pkcs8 = der(0x30, der(0x02, b"\x00") + der(0x30, bytes.fromhex("06092a864886f70d0101010500")) + der(0x04, RSA))
    assert check("private-key-pem", pem("PRIVATE KEY", pkcs8))
    encrypted = der(0x30, der(0x30, bytes.fromhex("06092a864886f70d01050d3000")) + der(0x04, b"\x99" * 80))
    assert check("private-key-pem", pem("ENCRYPTED PRIVATE KEY", encrypted))
    legacy = "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n"
    assert check("private-key-pem", pem("RSA PRIVATE KEY", b"\xab" * 96, headers=legacy))


@pytest.mark.parametrize("token", [
    pem("PRIVATE KEY", b"\x31" + RSA[1:]),  # DER SET, not SEQUENCE
    pem("RSA PRIVATE KEY", b"\x02\x01\x00" + RSA),  # does not start with 0x30
    pem("RSA PRIVATE KEY", RSA[:-5]),  # DER length does not match
    pem("RSA PRIVATE KEY", der(0x30, der(0x04, b"x" * 40))),  # first element not an INTEGER
    pem("ENCRYPTED PRIVATE KEY", RSA),  # encrypted PKCS#8 starts with a SEQUENCE
    pem("RSA PRIVATE KEY", RSA, end="EC PRIVATE KEY"),  # mismatched armor
    pem("OPENSSH PRIVATE KEY", RSA),  # a Tier-A format, not this validator's
    pem("RSA PRIVATE KEY", RSA).replace("M", "*", 2),  # not base64
    pem("RSA PRIVATE KEY", b"\xab" * 95, headers="Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n"),
    pem("RSA PRIVATE KEY", b"\xab" * 96, headers="Proc-Type: 4,ENCRYPTED\n\n"),  # no DEK-Info
    "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----",
])
def test_pem_broken_structure_is_rejected(token):
    assert not check("private-key-pem", token)
