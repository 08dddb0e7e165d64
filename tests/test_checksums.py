"""Tier-A checksum validators and profile entries (docs/token-formats.md, tier A).

Public vectors must validate; every one-character mutation of them must not; freshly generated tokens
(tests/generators.py, independent implementations of each algorithm) must validate and be found by the real
Detector with the built-in profile in the contexts traffic puts them in, and not when glued to more token text.
Validator parameters are taken from the profile itself, so these tests also check the profile's configuration.
"""

from __future__ import annotations

import base64
import json
import random
import re
import zlib
from functools import cache

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlproxy.engine.detector import Detector
from dlproxy.engine.prefilter import hyperscan_available
from dlproxy.engine.profile import builtin_profile_path, load_profiles, pattern_width
from dlproxy.engine.validators import REGISTRY
from dlproxy.engine.validators import checksums as cs
from generators import (
    ALNUM,
    ALNUM_LOWER_FIRST,
    B58,
    B64_STD,
    B64_URL,
    BECH32,
    ENTRA_ALPHABET,
    GENERATORS,
    encode_base,
)

PROFILE_PATH = builtin_profile_path()
BACKENDS = ["pyahocorasick"] + (["hyperscan"] if hyperscan_available() else [])
TIER_A_BEGIN = "# ---- Tier A:"
TIER_A_END = "# ---- end of Tier A"


def _tier_a_entries() -> dict[str, dict]:
    """The entries between the Tier-A markers of the built-in profile, parsed on their own."""
    text = PROFILE_PATH.read_text(encoding="utf-8")
    start = text.index("\n", text.index(TIER_A_BEGIN)) + 1
    block = text[start:text.index(TIER_A_END)]
    return {e["id"]: e for e in yaml.safe_load("entries:\n" + block)["entries"]}


TIER_A = _tier_a_entries()

# Passphrase-protected PuTTY/OpenSSH keys and CRC-less OpenPGP blocks can only be checked on structure, so they
# live in the Tier-B section; their validators sit beside the checksum ones they share parsers with.
COMPANION_IDS = ("pgp-private-key-no-crc", "putty-private-key-encrypted", "openssh-private-key-encrypted")


def _companion_entries() -> dict[str, dict]:
    entries = yaml.safe_load(PROFILE_PATH.read_text(encoding="utf-8"))["entries"]
    return {e["id"]: e for e in entries if e["id"] in COMPANION_IDS}


STRUCTURE_COMPANIONS = _companion_entries()
ENTRIES = {**TIER_A, **STRUCTURE_COMPANIONS}


def _checksum(entry: dict) -> tuple[str, dict]:
    spec = entry["checksum"]
    if isinstance(spec, str):
        return spec, {}
    return spec["name"], {k: v for k, v in spec.items() if k != "name"}


@cache
def _regex(entry_id: str, prefix: str) -> re.Pattern:
    entry = ENTRIES[entry_id]
    return re.compile(f"(?:{entry.get('before', '')})(?:{re.escape(prefix)})(?:{entry['pattern']})", re.ASCII)


def shape_prefix(entry_id: str, token: str) -> str | None:
    """The entry's prefix (keyword) when the whole token has the entry's shape, else None."""
    for prefix in sorted(ENTRIES[entry_id]["prefixes"], key=len, reverse=True):
        if _regex(entry_id, prefix).fullmatch(token):
            return prefix
    return None


def validate(entry_id: str, token: str, prefix: str) -> bool:
    """The entry's validator, called as the engine calls it: profile params, plus prefix= when declared."""
    name, params = _checksum(ENTRIES[entry_id])
    validator = REGISTRY[name]
    if "prefix" in validator.params:
        params = {**params, "prefix": prefix}
    return validator(token, **params)


def kind(entry_id: str) -> str:
    return REGISTRY[_checksum(ENTRIES[entry_id])[0]].kind


# --- public vectors ------------------------------------------------------------------------------------------

PGP_ONLY_SUBKEY = """-----BEGIN PGP PRIVATE KEY BLOCK-----
Version: GnuPG v1

lQCVBFggvocBBAC7vBsHn7MKmS6IiiZNTXdciplVgS9cqVd+RTdIAoyNTcsiV1H0
GQ3QtodOPeDlQDNoqinqaobd7R9g3m3hS53Nor7yBZkCWQ5x9v9JxRtoAq0sklh1
I1X2zEqZk2l6YrfBF/64zWrhjnW3j23szkrAIVu0faQXbQ4z56tmZrw11wARAQAB
/gdlAkdOVQG0CUdOVSBEdW1teYi4BBMBAgAiBQJYIL6HAhsDBgsJCAcDAgYVCAIJ
CgsEFgIDAQIeAQIXgAAKCRCd1xxWp1CYAnjGA/9synn6ZXJUKAXQzySgmCZvCIbl
rqBfEpxwLG4Q/lONhm5vthAE0z49I8hj5Gc5e2tLYUtq0o0OCRdCrYHa/efOYWpJ
6RsK99bePOisVzmOABLIgZkcr022kHoMCmkPgv9CUGKP1yqbGl+zzAwQfUjRUmvD
ZIcWLHi2ge4GzPMPi50B2ARYIL6cAQQAxWHnicKejAFcFcF1/3gUSgSH7eiwuBPX
M7vDdgGzlve1o1jbV4tzrjN9jsCl6r0nJPDMfBSzgLr1auNTRG6HpJ4abcOx86ED
Ad+avDcQPZb7z3dPhH/gb2lQejZsHh7bbeOS8WMSzHV3RqCLd8J/xwWPNR5zKn1f
yp4IGfopidMAEQEAAQAD+wQOelnR82+dxyM2IFmZdOB9wSXQeCVOvxSaNMh6Y3lk
UOOkO8Nlic4x0ungQRvjoRs4wBmCuwFK/MII6jKui0B7dn/NDf51i7rGdNGuJXDH
e676By1sEY/NGkc74jr74T+5GWNU64W0vkpfgVmjSAzsUtpmhJMXsc7beBhJdnVl
AgDKCb8hZqj1alcdmLoNvb7ibA3K/V8J462CPD7bMySPBa/uayoFhNxibpoXml2r
oOtHa5izF3b0/9JY97F6rqkdAgD6GdTJ+xmlCoz1Sewoif1I6krq6xoa7gOYpIXo
UL1Afr+LiJeyAnF/M34j/kjIVmPanZJjry0kkjHE5ILjH3uvAf4/6n9np+Th8ujS
YDCIzKwR7639+H+qccOaddCep8Y6KGUMVdD/vTKEx1rMtK+hK/CDkkkxnFslifMJ
kqoqv3WUqCWJAT0EGAECAAkFAlggvpwCGwIAqAkQndccVqdQmAKdIAQZAQIABgUC
WCC+nAAKCRDmGUholQPwvQk+A/9latnSsR5s5/1A9TFki11GzSEnfLbx46FYOdkW
n3YBxZoPQGxNA1vIn8GmouxZInw9CF4jdOJxEdzLlYQJ9YLTLtN5tQEMl/19/bR8
/qLacAZ9IOezYRWxxZsyn6//jfl7A0Y+FV59d4YajKkEfItcIIlgVBSW6T+TNQT3
R+EH5HJ/A/4/AN0CmBhhE2vGzTnVU0VPrE4V64pjn1rufFdclgpixNZCuuqpKpoE
VVHn6mnBf4njKjZrAGPs5kfQ+H4NsM7v3Zz4yV6deu9FZc4O6E+V1WJ38rO8eBix
7G2jko106CC6vtxsCPVIzY7aaG3H5pjRtomw+pX7SzrQ7FUg2PGumg==
=F/T0
-----END PGP PRIVATE KEY BLOCK-----"""  # ProtonMail/go-crypto openpgp/keys_test_data.go onlySubkeyNoPrivateKey

PGP_ECDSA = """-----BEGIN PGP PRIVATE KEY BLOCK-----

xaUEX1KsSRMIKoZIzj0DAQcCAwTpYqJsnJiFhKKh+8TulWD+lVmerBFNS+Ii
B+nlG3T0xQQ4Sy5eIjJ0CExIQQzi3EElF/Z2l4F3WC5taFA11NgA/gkDCHSS
PThf1M2K4LN8F1MRcvR+sb7i0nH55ojkwuVB1DE6jqIT9m9i+mX1tzjSAS+6
lPQiweCJvG7xTC7Hs3AzRapf/r1At4TB+v+5G2/CKynNFEJpbGwgPGJpbGxA
aG9tZS5jb20+wncEEBMIAB8FAl9SrEkGCwkHCAMCBBUICgIDFgIBAhkBAhsD
Ah4BAAoJEMpwT3+q3+xqw5UBAMebZN9isEZ1ML+R/jWAAWMwa/knMugrEZ1v
Bl9+ZwM0AQCZdf80/wYY4Nve01qSRFv8OmKswLli3TvDv6FKc4cLz8epBF9S
rEkSCCqGSM49AwEHAgMEAjKnT9b5wY2bf9TpAV3d7OUfPOxKj9c4VzeVzSrH
AtQgo/MuI1cdYVURicV4i76DNjFhQHQFTk7BrC+C2u1yqQMBCAf+CQMIHImA
iYfzQtjgQWSFZYUkCFpbbwhNF0ch+3HNaZkaHCnZRIsWsRnc6FCb6lRQyK9+
Dq59kHlduE5QgY40894jfmP2JdJHU6nBdYrivbEdbMJhBBgTCAAJBQJfUqxJ
AhsMAAoJEMpwT3+q3+xqUI0BAMykhV08kQ4Ip9Qlbss6Jdufv7YrU0Vd5hou
b5TmiPd0APoDBh3qIic+aLLUcAuG3+Gt1P1AbUlmqV61ozn1WfHxfw==
=KLN8
-----END PGP PRIVATE KEY BLOCK-----"""  # ProtonMail/go-crypto openpgp/keys_test_data.go ecdsaPrivateKey

# A public key (first packet tag 6) with a correct CRC: relabelled as PRIVATE it must still be rejected.
PGP_PUBLIC_BODY = """mDMEYYwB7RYJKwYBBAHaRw8BAQdARimqhPPzyGAXmfQJjcqM1QVPzLtURJSzNVll
JV4tEaW0KVJldm9rZWQgUHJpbWFyeSBVc2VyIElEIDxyZXZva2VkQGtleS5jb20+
iHgEMBYIACAWIQSpyJZAXYqVEFkjyKutFcS0yeB0LQUCYYwCtgIdAAAKCRCtFcS0
yeB0LbSsAQD8OYMaaBjrdzzpwIkP1stgmPd4/kzN/ZG28Ywl6a5F5QEA5Xg7aq4e
/t6Fsb4F5iqB956kSPe6YJrikobD/tBbMwSIkAQTFggAOBYhBKnIlkBdipUQWSPI
q60VxLTJ4HQtBQJhjAHtAhsDBQsJCAcCBhUKCQgLAgQWAgMBAh4BAheAAAoJEK0V
xLTJ4HQtBaoBAPZL7luTCji+Tqhn7XNfFE/0QIahCt8k9wfO1cGlB3inAQDf8Tzw
ZGR5fNluUcNoVxQT7bUSFStbaGo3k0BaOYPbCLg4BGGMAe0SCisGAQQBl1UBBQEB
B0DLwSpveSrbIO/IVZD13yrs1XuB3FURZUnafGrRq7+jUAMBCAeIeAQYFggAIBYh
BKnIlkBdipUQWSPIq60VxLTJ4HQtBQJhjAHtAhsMAAoJEK0VxLTJ4HQtZ1oA/j9u
8+p3xTNzsmabTL6BkNbMeB/RUKCrlm6woM6AV+vxAQCcXTn3JC2sNoNrLoXuVzaA
mcG3/TwG5GSQUUPkrDsGDA==
=mFWy"""  # ProtonMail/go-crypto keyWithOnlyUserIDRevoked

PUTTY_V3 = """PuTTY-User-Key-File-3: ssh-rsa
Encryption: none
Comment: rsa-key-20220216
Public-Lines: 6
AAAAB3NzaC1yc2EAAAADAQABAAABAQCJ39DLYw81oZmBMeRze+Plu0p8+kJezer4
mRpltRoqpZ0yRnyb5k0FtXrDeYL9IyCceOTsse/qks3CtVWQ2q7C2tqyezmk8mDf
aKXqnaSG3hHZo7vJcy76J7NNB6Mz2BxF9RGvb+sylEKdWOJdgmYC6dzyvpg/0qs6
yNPQGA5QOOzy2AstxnsujDl16I0GGsjw7ybc5844Hq4VhIQaft2Yd35UqGt5G1hs
nIZu1cLO/F+8xs+0xEY04FvJRNAoJGlVc8oPx7slU7vF5m22AmBqrhkljbid72OR
oXpI+4c7zc0dYZBIMoAEIJKTbliQE1WV0lYiXkS9RY3UjUyPLho9
Private-Lines: 14
AAABAQCI4IliEeMcpGVILOcXe2yCO1E1CCLyCc53pU/en0/t/OM18WJuR9I5k7Tf
8XeIpeIPVbo3/mMn5zydS/c5ytDrI+kwfkN5LSPdSABIDt8zAa6I+hNJaK+/q8BG
/gkZRDi1fxpiqGLAoQ4NNhvtJ7Lsu44d8/gkjJpvzsbx9Z/oJVK8ID10Wiiz9R7u
WPCOJbrETGU1LaY4N0hwhbqD28xtX4ypBh+HQ9umCqOMopeqVhebMolAZ62K5V+N
SbdN1JFk2FPQxMv3v4ApDW48AcJ1dNgO6euncaySLaQv3tnxYVjKVaf3JO0ALzoq
zsR2uj5bJUvhSapj9uWdDJTurGzFAAAAgQDY5t/F2Ruoa5wtF/XTiIxFpb//xQ+2
JhQOWd1fZZ+oMclqNS5E45E11TWnKthgr5NN4UB6TH4rtUETjsypD3w2PYZamTD1
QzeoOS0xRxjKfQu08ApDV94mx9LfX6Xi2IqTW0pC+IbBx8AUnK7J7scva8TYn7Qu
1QLSY4/tn3BBBwAAAIEAorolHJnR+w5FajTc8VeqN5E9bfc39Mr+2lQcqtARJGAM
2jLhN3ZWGIboG3Ttqcbfuicv/WzFe+gGRA8awvMS4v2C5/knZl4Vq859KCP7JOeW
63+5mLw5OKZOzWkguMu8+IfkUtIMv1JFuCU2eRL5elUthKlK6WFcMejuygNTrZsA
AACARP7yi23FNxAqHcgbx5MlrLYbMSjxp5yT+1XeNVTSpM/dvDVsy+8ETi/c1870
UfAzuIHQl2fu6NdtPBQUoqWKgBRtp46J/BoWF3Ty6klz+FAP2of4gojYvqa87H+6
dW7G8+QXxXM704cxjbBQAApItfVw3upWPrYP9FDy7xvtYRY=
Private-MAC: 7979eb6f604fb3e0bd191295479517f641598649167835402c6cbfde6cbf21ef"""  # phpseclib testPuTTYV3NoPW

PUTTY_V3_ENCRYPTED = """PuTTY-User-Key-File-3: ssh-rsa
Encryption: aes256-cbc
Comment: rsa-key-20220216
Public-Lines: 6
AAAAB3NzaC1yc2EAAAADAQABAAABAQCJ39DLYw81oZmBMeRze+Plu0p8+kJezer4
mRpltRoqpZ0yRnyb5k0FtXrDeYL9IyCceOTsse/qks3CtVWQ2q7C2tqyezmk8mDf
aKXqnaSG3hHZo7vJcy76J7NNB6Mz2BxF9RGvb+sylEKdWOJdgmYC6dzyvpg/0qs6
yNPQGA5QOOzy2AstxnsujDl16I0GGsjw7ybc5844Hq4VhIQaft2Yd35UqGt5G1hs
nIZu1cLO/F+8xs+0xEY04FvJRNAoJGlVc8oPx7slU7vF5m22AmBqrhkljbid72OR
oXpI+4c7zc0dYZBIMoAEIJKTbliQE1WV0lYiXkS9RY3UjUyPLho9
Key-Derivation: Argon2id
Argon2-Memory: 8192
Argon2-Passes: 13
Argon2-Parallelism: 1
Argon2-Salt: d9bfa07d14a450a26ada4eb5d30c4dae
Private-Lines: 14
L3TUmo97jnxJVYIScxzPIaq19/yNQ5HDQKGSTz4vqUrQR3wXQEyhzxlN2mm5zZtT
pst7K61P0awtjs4kHUfsKxXh/upv7ndS9u9G7cnnBfP5mjs0wAE2VaghbP4UXprH
/MQC9Dr13Iuydv5Oih+PLpkvM3DbY5t+nrIWy/29yDLYe/QjLvy346Gz3pnLmCfb
hbEFfjefdppa+6QZ+qU6ai/NMAM/Q5OxjRlIo1brrKJNvMrbzP7irZ4+Ao2Or/hX
nb2ZZLY0eUotD8iFuOk2EjjqP9iakag1OHdvdy6EcPzkIObN5YeZGz9/hRDFr9Ml
xNxdaw5c1BhqU5pm0B0HUDqW5kmYTiugUKQiGr0+1ckliUt6jsb7YImnqJIgL7PS
vKcqNvz95u4on77gHPl2JdsXxuz6jOkDwc9jvsJCtIMJ8qhAVXGS7WaH2aF9ty7B
4E+f2yIbsRr0RFCZoTTjTmhtYsVd7DYo0Jftya3Sh/lVO1MLo1z8em0MFJdR683N
tRDA2lbRPOdKYaiKdyp5bAsl4fqPR1e2GR9ybalPn/XSFDRtDfdMr7hyQboBR7uC
X3nYsh5OiXakUSr2ST41pP27s8F48590M6xWb9LGFJA+JqmAZ5rxPTxFYjkz27y9
Yvlq6lvM+XsUREPrxhWrHya4Jyp4WtyVtJXDg626hoZBSEtcOY/mbPfwVFnoU9vz
V8TI/YU837mUceEJlEQEbT+bFJfh0W5jzAYx2xX6uPnDkodBMK2p6QS3ZKib0NJ7
W+jQr9TT40H0agZhtAmPKaLGxtgdpUps1CDPV+8Y/pBf28CsI2DjFaOYopZXcW9s
vCIjXopt4wAKbXiLyb5JXzFfB7CVron48NHB7wzuwvnUoYa/4dbjeEos+1y72xoP
Private-MAC: d26baf87446604974287b682ed9e0c00ce54e460e1cb719953a81291147b3c59"""  # phpseclib testPuTTYV3PW

OPENSSH_ED25519 = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACA8YWKYztuuvxUIMomc3zv0OdXCT57Cc2cRYu3TMbX9XAAAAJDiKO3C4ijt
wgAAAAtzc2gtZWQyNTUxOQAAACA8YWKYztuuvxUIMomc3zv0OdXCT57Cc2cRYu3TMbX9XA
AAAECzmj8DGxg5YHtBK4AmBttMXDQHsPAaCyYHQjJ4YujRBTxhYpjO266/FQgyiZzfO/Q5
1cJPnsJzZxFi7dMxtf1cAAAADHJvb3RAZGV2aG9zdAE=
-----END OPENSSH PRIVATE KEY-----"""  # gitleaks testdata/repos/symlinks/source_file/id_ed25519

OPENSSH_RSA_ENCRYPTED = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABBN2Ff3Kw
SIOWyzRiboPRIhAAAAEAAAAAEAAAGXAAAAB3NzaC1yc2EAAAADAQABAAABgQCpxMxDEG0S
gf8oVUPcoPq34BQtj0WIgSGKa/y+aeNN4c38KdlluTKx53B3MWPCwCIBynfxx/IeFb8mmV
7ojIinKp4nocR0LxWA1+B0A0lQmVOfKhUNScillxxRSNQJTi4UjKyBmj1bU9w7Fp7beNzz
NKcHW9t3iBYZFnzGuatcTWLdkzyBitOemD3duOzI5a9CR7c/MbJdVzC2G4BFCdzRtjYOG5
w2wuofrac4I3fI6NK9d+mePPxKJIwYDyQk5pmG89p7T7M7JdSpQSwiN2ZrkinGfxUJLKsf
4o29rjHSfd/r18rDor2vzpfaQcuR/NFRsPWE1iOx3bPns2bRWt5QYWF5eRZAb2HwSF0w+r
/tKqVkomYALV31K3W8fLw0bMepvyHTrRiSKvwkOTNw58Gr+DQplSpbFJuCKaktrMb3pf/t
jXeAItJnSdBeUAnKNUKv2oxldpT74y1yEpvZPa8nsnHVtB+Xc5Hy1Lr0PMf7FBOXLTpMu5
YNd8myLKhX57sAAAWQV9Znl6fgfCTtrMupyop0n9obvDLTTFMf7FY5NlLc+qxpz9qJ+hgD
l+18OFgGqV85F1OY4wdfVXzkEIYMUWw9F1zDwUOW8Yfpk/IIQiqHSL4zfwXS/e4mG9Sfou
7fzOPflmzCjWZGnVaxmYs2ybdbLEu0sRMWAKbXgWTf/H4jg8qGKxPFJT669RZEUZk3hIGG
CcIdmkOHgMXw+XdX61GE/5/jBPv9GIyTQXLHSsUG4rlF2saBj4QLVBOf6oW7TiVjXvvCm7
jnHFTSS3Kx5yB47GEIzAIRRJEnuPdOR1mJdASX2as96hMw7y4leQnzyJgQ1slIz8na8Z2P
9aR7MYOlaX6/gDNRh2BQlOAxai30iieNSQi2qfuVC3SbpHXf9+yOTva8wfb55WYtm9UQ3R
YxI6HrwjfnD/8EjiXmhbJfLlKfzkM6KDBSEUkOIWxgJBkBhkuXdacv5iSV3dCMnHk3kXOv
2b/B7e7Uc9x6Xva8cXcp//y12rpYXdTXTVYEGnmDVz9U1ITOjI9umAAYNmZgEPoabNb6r4
3cARBPz42hQ4LmILr0JCj5P/0cRzdMrZEumwvXkP3/BuGkj9AjFh2r9WhZ/yCaXVGxzS/b
bySXy1LMgQRbWLwbDOmGqsPn74KpiRgO/IhtXzlOt5+RumqFS7JI8N/qUlMwFcAhO9EsCQ
UBKWN4enVg2Y8vL/mCuFMW9SQR3pNfBL7uqdOFsdtalPC4vzMyUpkd3dUVpkJ2RYc1bEfh
oumUZr0aM+CSscOVwHt8VwKqZ/wBV3ZtL4KL+uy2ko0Ig0ZuBHeK65m2JWETtKJR/sk+DN
bK8MABP+FVXxHaL5UeLQAo9K80UukSwypJgRV4EyvK8fIMoNh8SDlqMi48E1xyucpC1yQX
k+5MuzJL7WbTCudyHOtWcrlGlI6aXE3846fAoejSxp0R57GJZ8i3oocI+hzYT6HvNnsiHq
Nm5hrEC/wNz0U0w/VniXocHwHYbp8VOb3fMfkXPi9eYJqv+WgEHm50D/3ve8Bhsxp5BYaF
va8Wf3Tsy35Bbqx5Z9pF6ZptHHL5D1a5K8o+GfRzsxXzXOKjRz5Sgt/qDZuSJ3HhrdONGF
3oHO+/Brbzfs3hbgJKpzhlXLAxxWsD9qdJKSTdfOXSvu+vDrHPp/V1LSBEWD/ZwIQdEMwK
MZ17sLZqzp1PHOQQPx+ugnCt5OPokG6LR281qQAy0y3OefnYn62DsLMt3DLnbJvr2jtlWi
GA1sAcQqQlWetiD0AszwkhuEhmUxySoGqKFRiKccgLK6DEgRSFLWGS8MiZenFwR+cJ+73L
4WeApHfZeATEY5groZDix+yq3cHT5wY49GHlHPbaikythWMHAJ4FNGsF1tAM06sRUQfsEM
1jXnpuzr+TLNCfP457Ffvf+zuIpQJXjYOgXAzKO2eVXmYygYWGqFGOFeFkM1FN2UXdGAKU
ObHAmXAXUAqXAgjk4fjETG1YSnqolakKIIw2Jn+FdNnuvfgzMwdvz1Do3x84h+SIoVgqvE
A2mgZNWUzFF+0B/1e2a/G6gxsAUXgfuMYe8zycNvhxygINHYgeBRCb4/qJxKBcq3QV1Pip
jGpgScZvefpYEMHqbVy6hsFDIQotzqR0lIg+d4WaxxhsNWVQPXUf/2NtwZjeCJQdlrgi48
MXKJ4PNjqCej6QXswbw7PDwx3jI2HFt/tX/V6PActZtIrpMaekMit87bIr4wAcXNTsuTo3
4zejkH1MMkZA+LRKwhsqcOKzyzSyOvI50IVfF92ViXb1P/7zwdvMSqEghvLooHpcRLDmZB
8t9cFMOs5N2CzmXxKrCVD1Ex45f36/jGmxI5qcKdkulVcuY3yWQra3onzfkCEODGCW5FeG
LrIZULwMa4nI4Y+RkFftEponSYw=
-----END OPENSSH PRIVATE KEY-----"""  # phpseclib testOpenSSHEncrypted (aes256-ctr, bcrypt)

# The 20 classic PATs their owner let expire and published for inspection (therootcompany/base62-token.js
# test.js; docs/token-formats.md shows the first). Seven have a checksum starting with 0: padding matters.
REVOKED_GHP = """
    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 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
    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 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
    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 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
    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 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
    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 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
    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 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
    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 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
    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 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
    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 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
    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 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
""".split()

VECTORS: dict[str, list[str]] = {
    "github-classic-pat": REVOKED_GHP + [
        "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",  # trufflehog escaped_unicode_test.go
        # DataDog dd-sensitive-data-scanner github_token_checksum.rs
        "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", "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",
        "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", "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"],
    "github-oauth-token": ["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"],
    "github-app-user-token": ["ghu_QoXdtrSAaW5sNsCFtHv8cK0ImbQxn11nVkQT"],
    "github-app-installation-token": ["ghs_oJrI3NxJonXega4cd3v1XHDjjMk3jh2ENWzb"],
    "github-app-refresh-token": ["ghr_OWOCPzqKuy3J4w53QpkLfffjBUJSh5yLnFHj7wiyR0NDadVOcykNkoqhoYYXM1yy2sOpAu0lG8fw"],
    "npm-access-token": ["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"],
    "vercel-token": ["vcp_35UYJwYZDigYATKhxJUAhPqRhit2Xe3dtiG60LsUTHeklEXDQ94Jafpu",
                     "vcp_4mcjwVDwqtVCVGWCcxRjdzGpkGZ3NkwXZv8ktcoQ0EG0dnjpMP1Rzi71",
                     "vca_BQuu9ChDu3n6Pfh6YQnCshpoYkWDSFKogLqmBtQ0tC8NAA5rXt340sjz",
                     "vck_2YkmQj1uHqCVNoUx5a9uvRTe81gmAcln5hoRMPWFBU4tulufUf0OzP2K"],
    "deno-deploy-token": ["ddp_qz538MNyqwfETb1ikqeqHiqA9Aa9Pv22yzmw", "ddo_4nkT2HnlnbPpGbW5RVE7DsIyfMJ3bN3YeqZT"],
    "apify-api-token": ["apify_api_NcjXcxEz2XL1irjppyWSHvjghalQOd1LXOHv",
                        "apify_api_9uyewBxQUF1EXWdKVc4lNaTSM461Ls4oQouz"],
    "cloudflare-user-api-token": ["cfut_ZE4CrcFhEIDXk9vL2sTLeARsFp2ZZYbydVDhhIUq8573bbfe"],
    "zuplo-api-key": ["zpka_3e6c4f7d39954ca29353b7ab88589b64_de26cd55",
                      "zpka_b3f94d8d3d4d4a6ea5c5b20d0a5bb407_18eb262b"],
    "atlassian-api-token": [  # the Atlassian vectors (docs/token-formats.md A12–A14) in full
        "ATATT3xFfGF0YZuf-EBmAHs1FyiNmk0cYQKtD9zx2LIv8d_zB-yk5Zp8nkug2Rp_ZnYJwq9ys-lS0PRAXLS4vL-crh5tbBbGQISteyOCp"
        "gUGgKjckD2MF9A6EZVGdTXikj52U2VDS8HeDlUq9Gmw8KYs5Kb0hS-LZo4Sb2PMpT1Zx0MmTXs_EyA=E2826606",
        "ATATT3xFfGF0Z0J8j7dew7xO2JMwbmnBZm-aJ5ORorE7qRgkDnmZYg9tpvatRzyvZNebxWeUxRZnSkEGeyAV3_Jew_YCxyCUsw_Ipefx"
        "sk0EFerD8PlRNEDtQQEmexYVpWbuTguSvV3USUg41GEdgTYa1MUK3YusfDWKzLthXBmkeUH4ZyaTp2Q=325540CC",
        "ATATT3xFfGF0K3irG5tKKi-6u-wwaXQFeGwZ-IHR-hQ3CulkKtMSuteRQFfLZ6jihHThzZCg_UjnDt-4Wl_gIRf4zrZJs5JqaeuBhsfJ"
        "4W5GD6yGg3W7903gbvaxZPBjxIQQ7BgFDSkPS8oPispw4KLz56mdK-G6CIvLO6hHRrZHY0Q3tvJ6JxE=C63992E6"],
    "bitbucket-app-password": ["ATBBcCe6fczW96Vzwgvb4r8F2gZS54D591C4"],
    "grafana-service-account-token": ["glsa_iNValIdinValiDinvalidinvalidinva_5b582697",
                                      "glsa_ThisI5NtTheTok3nYou8reLo0k1ngF0r_0a2a3df7"],
    "gitlab-routable-token": ["glpat-bzox79Of-KE9FD2LjoXXF4CvyxA.01.0r0l8l6ir",
                              "glpat-bzox79Of-KE9FD2LjoXXF4CvyxA.0r03gxo7s"],
    # microsoft/security-utilities identifiable_scans.rs fixtures (docs/token-formats.md A17/A18), padded and unpadded
    "azure-storage-account-key": ["a" * 76 + "+ASt5mnCaw==", "a" * 76 + "+ASt5mnCaw"],
    "azure-batch-key": ["a" * 76 + "+ABa13FZVQ=="],
    "azure-ml-classic-key": ["a" * 76 + "+AMCFNqWyA=="],
    "azure-cosmosdb-key": ["a" * 76 + "ACDbOpqrYA=="],
    "azure-apim-key": ["a" * 76 + "APIMHbKhsQ=="],
    "azure-service-bus-key": ["a" * 33 + "+ASbHpHeAI=", "a" * 33 + "+ASbHpHeAI"],
    "azure-event-hubs-key": ["a" * 33 + "+AEhG2s/8w="],
    "azure-relay-key": ["a" * 33 + "+ARmD7h+qo="],
    "azure-iot-key": ["a" * 33 + "AIoTOumzco="],
    "azure-search-key": ["a" * 42 + "AzSeCjhzCu"],
    "azure-container-registry-key": ["d" * 42 + "+ACRCUDxQE"],
    "azure-functions-key": ["d" * 44 + "AzFu182vhA==", "d" * 44 + "AzFu182vhA"],
    "azure-cask-key": ["H" * 52 + "JQQJ99AEAAAAAAAAAAAAAAAAAZFUxIXY",  # base62 checksum form
                       "H" * 52 + "JQQJ99AEAAAAAAAAAAAAAAAAAZFUNDoZ"],  # base64 form of the same checksum
    "entra-client-secret": ["zzz8Q~zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzblP"],
    "nats-nkey-seed": ["SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY",
                       "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY"],
    "age-secret-key": ["AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"],
    "nostr-private-key": ["nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"],
    "bip32-extended-private-key": [
        "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi"],
    "pgp-private-key": [PGP_ONLY_SUBKEY, PGP_ECDSA],
    "putty-private-key": [PUTTY_V3],
    "putty-private-key-encrypted": [PUTTY_V3_ENCRYPTED],
    "openssh-private-key": [OPENSSH_ED25519],
    "openssh-private-key-encrypted": [OPENSSH_RSA_ENCRYPTED],
}

VECTOR_CASES = [(entry_id, token) for entry_id, tokens in VECTORS.items() for token in tokens]


def _case_id(case) -> str:
    entry_id, token = case
    return f"{entry_id}:{token.splitlines()[0][-12:] if len(token) < 120 else len(token)}"


def test_tier_a_section_has_a_generator_and_a_checksum_validator_for_every_entry():
    assert set(ENTRIES) == set(GENERATORS)
    for entry_id, entry in TIER_A.items():
        assert kind(entry_id) == "checksum", entry_id
        assert all(len(p) >= 3 for p in entry["prefixes"])
    assert {kind(e) for e in STRUCTURE_COMPANIONS} == {"structure"}
    assert not set(STRUCTURE_COMPANIONS) & set(TIER_A)


@pytest.mark.parametrize("case", VECTOR_CASES, ids=[_case_id(c) for c in VECTOR_CASES])
def test_public_vector_has_the_entry_shape_and_validates(case):
    entry_id, token = case
    prefix = shape_prefix(entry_id, token)
    assert prefix is not None, "shape"
    assert validate(entry_id, token, prefix)


# --- one-character mutations ---------------------------------------------------------------------------------

ARMOR_ALPHABET = B64_STD + "=\n -:"
MUTATION_ALPHABETS = {
    "atlassian-api-token": ALNUM + "_-=", "zuplo-api-key": ALNUM + "_", "grafana-service-account-token": ALNUM + "_",
    "gitlab-routable-token": B64_URL + ".", "azure-functions-key": B64_URL + "=", "azure-cask-key": ALNUM + "+/=",
    "entra-client-secret": ENTRA_ALPHABET, "nats-nkey-seed": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
    "age-secret-key": BECH32.upper(), "nostr-private-key": BECH32, "bip32-extended-private-key": B58,
    "pgp-private-key": ARMOR_ALPHABET, "putty-private-key": ARMOR_ALPHABET,
}


def mutation_alphabet(entry_id: str) -> str:
    if entry_id in MUTATION_ALPHABETS:
        return MUTATION_ALPHABETS[entry_id]
    return B64_STD + "=" if entry_id.startswith("azure-") else ALNUM


def mutations(token: str, alphabet: str, per_position: int = 2):
    """Every position of `token`, each replaced by `per_position` different characters of the alphabet."""
    rng = random.Random(token)
    for i, c in enumerate(token):
        choices = [a for a in alphabet if a != c]
        for sub in rng.sample(choices, per_position):
            yield i, token[:i] + sub + token[i + 1:]


EXHAUSTIVE = [c for c in VECTOR_CASES if kind(c[0]) == "checksum"
              and c[0] not in ("entra-client-secret", "openssh-private-key")]


def _armor_header_positions(token: str) -> set[int]:
    """Character positions of OpenPGP armor header lines (`Version: …`): by RFC 4880 no checksum covers them."""
    out, pos = set(), 0
    for line in token.split("\n"):
        if re.match(r"[A-Za-z][A-Za-z0-9-]*: ", line):
            out.update(range(pos, pos + len(line) + 1))
        pos += len(line) + 1
    return out


@pytest.mark.parametrize("case", EXHAUSTIVE, ids=[_case_id(c) for c in EXHAUSTIVE])
def test_every_one_character_mutation_of_a_vector_is_rejected(case):
    entry_id, token = case
    prefix = shape_prefix(entry_id, token)
    uncovered = _armor_header_positions(token) if entry_id == "pgp-private-key" else set()
    accepted = [i for i, m in mutations(token, mutation_alphabet(entry_id))
                if i not in uncovered and validate(entry_id, m, prefix)]
    assert accepted == []


def test_entra_mutations_stay_within_the_3_character_checksum_bound():
    """Entra keeps only ~18 bits of checksum (1 in 287,496 per random change): a statistical bound, not 'all'."""
    rng = random.Random(7)
    tokens = VECTORS["entra-client-secret"] + [GENERATORS["entra-client-secret"](rng) for _ in range(40)]
    trials = accepted = 0
    for token in tokens:
        for _, m in mutations(token, ENTRA_ALPHABET, per_position=3):
            trials += 1
            accepted += validate("entra-client-secret", m, "8Q~")
    assert trials > 4000
    assert accepted <= 2  # expected ~0.02


def _openssh_data(token: str) -> tuple[list[str], bytes]:
    lines = token.split("\n")
    return lines, cs.base64.b64decode("".join(lines[1:-1]))


def _openssh_rearmor(lines: list[str], data: bytes) -> str:
    body = cs.base64.b64encode(data).decode()
    return "\n".join([lines[0], *[body[i:i + 70] for i in range(0, len(body), 70)], lines[-1]])


def _checkint_offset(data: bytes) -> int:
    pos = len(b"openssh-key-v1\x00")
    for _ in range(3):
        _, pos = cs._ssh_string(data, pos)
    count = int.from_bytes(data[pos:pos + 4], "big")
    pos += 4
    for _ in range(count):
        _, pos = cs._ssh_string(data, pos)
    return pos + 4


@pytest.mark.parametrize("token", [OPENSSH_ED25519] + [GENERATORS["openssh-private-key"](random.Random(s))
                                                       for s in range(5)])
def test_openssh_check_int_changes_are_rejected(token):
    """The OpenSSH 'checksum' is two equal random check-ints: it catches every change to them (and to the
    container's structure), not to the key bytes — documented, so only those mutations must fail."""
    assert validate("openssh-private-key", token, "")
    lines, data = _openssh_data(token)
    at = _checkint_offset(data)
    for i in range(at, at + 8):
        for flip in (0x01, 0x80, 0xFF):
            changed = bytearray(data)
            changed[i] ^= flip
            assert not validate("openssh-private-key", _openssh_rearmor(lines, bytes(changed)), "")
    for i, m in mutations(token, B64_STD):
        if not (len(lines[0]) <= i < len(token) - len(lines[-1])):  # the BEGIN and END lines
            assert not validate("openssh-private-key", m, "")


# --- generated tokens ------------------------------------------------------------------------------------------

SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
MUTATION_CHECKED = sorted(e for e in GENERATORS if kind(e) == "checksum"
                          and e not in ("entra-client-secret", "openssh-private-key"))


@pytest.mark.parametrize("entry_id", sorted(GENERATORS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS)
def test_generated_token_has_the_shape_and_validates(entry_id, seed):
    token = GENERATORS[entry_id](random.Random(seed))
    prefix = shape_prefix(entry_id, token)
    assert prefix is not None
    assert validate(entry_id, token, prefix)


@pytest.mark.parametrize("entry_id", MUTATION_CHECKED)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, where=st.floats(min_value=0, max_value=1, exclude_max=True), pick=st.integers(0, 10**6))
def test_random_mutation_of_a_generated_token_is_rejected(entry_id, seed, where, pick):
    token = GENERATORS[entry_id](random.Random(seed))
    prefix = shape_prefix(entry_id, token)
    uncovered = _armor_header_positions(token) if entry_id == "pgp-private-key" else set()
    covered = [i for i in range(len(token)) if i not in uncovered]
    i = covered[int(where * len(covered))]
    choices = [a for a in mutation_alphabet(entry_id) if a != token[i]]
    mutated = token[:i] + choices[pick % len(choices)] + token[i + 1:]
    assert validate(entry_id, mutated, prefix) == marvin_seed_twin(entry_id, token, mutated)


def marvin_seed_twin(entry_id: str, token: str, mutated: str) -> bool:
    """Marvin32's seed enters only as the starting state `lo += first word`: for two seeds of an entry with the
    same high half, changing the first 4 bytes by the difference of their low halves gives a key that is valid
    under the other seed. Such a one-character mutation is a valid key by construction, not a validator error."""
    name, params = _checksum(ENTRIES[entry_id])
    if name != "marvin32-identifiable":
        return False
    decode = base64.urlsafe_b64decode if params.get("url_safe") else base64.b64decode
    pad = lambda t: t.rstrip("=") + "=" * (-len(t.rstrip("=")) % 4)  # noqa: E731
    try:
        a, b = decode(pad(token)), decode(pad(mutated))
    except ValueError:  # the mutation is not base64 at all
        return False
    if a[4:] != b[4:]:
        return False
    delta = (int.from_bytes(b[:4], "little") - int.from_bytes(a[:4], "little")) % 2**32
    seeds = cs._seed_values(params.get("seeds", "Default0"))
    embedded = int.from_bytes(a[-4:], "little")
    own = [s for s in seeds if cs.marvin32_checksum(a[:-4], s) == embedded]
    return any(s >> 32 == t >> 32 and ((s - t) & 0xFFFFFFFF) == delta for s in own for t in seeds if s != t)


def test_a_marvin_seed_twin_is_valid_by_construction():
    """The example Hypothesis found: one character of a Cosmos DB key changed makes a key of a sibling seed."""
    token = "RIgP/58waM+Dx3A5idNoDCDBwb2Dc4/dsdc6lC1MXlPq2Ymk/yE9fz1WuvL4NUyv+D8FnyVVdBZdACDbJ5oTsQ=="
    twin = token[:3] + "X" + token[4:]
    other = token[:3] + "Y" + token[4:]
    assert validate("azure-cosmosdb-key", token, "ACDb") and validate("azure-cosmosdb-key", twin, "ACDb")
    assert marvin_seed_twin("azure-cosmosdb-key", token, twin)
    assert not marvin_seed_twin("azure-cosmosdb-key", token, other)
    assert not validate("azure-cosmosdb-key", other, "ACDb")


def test_generated_tokens_differ_per_seed():
    for entry_id, make in GENERATORS.items():
        assert make(random.Random(1)) != make(random.Random(2)), entry_id
        assert make(random.Random(3)) == make(random.Random(3)), entry_id


# --- algorithm details --------------------------------------------------------------------------------------------


def test_marvin32_reference_vector():
    assert cs.marvin32(b"abc", 0xD53CD9CECD0893B7) == 0x22C74339492769BF
    assert cs.marvin32_checksum(b"abc", 0xD53CD9CECD0893B7) == 0x22C74339 ^ 0x492769BF


@pytest.mark.parametrize("length", range(0, 9))
def test_marvin32_agrees_with_the_independent_implementation_for_every_tail_length(length):
    from generators import marvin32_checksum

    data = bytes(range(7, 7 + length))
    for seed in (0, 0x44656661756C7430, 0xFFFFFFFFFFFFFFFF):
        assert cs.marvin32_checksum(data, seed) == marvin32_checksum(data, seed)


def test_crc_check_values():
    assert cs.crc16_xmodem(b"123456789") == 0x31C3  # CRC-16/XMODEM catalogue check value
    assert cs.crc24(b"123456789") == 0x21CF02  # CRC-24/OPENPGP catalogue check value
    assert cs.crc24(b"") == 0xB704CE


def _zero_padded(rng: random.Random, alphabet: str, hash_prefix: str = "") -> tuple[str, str]:
    """A body whose CRC32 is below 62^5, so its base62 checksum starts with the zero digit."""
    while True:
        body = "".join(rng.choice(ALNUM) for _ in range(30))
        crc = zlib.crc32((hash_prefix + body).encode())
        if crc < 62**5:
            return body, encode_base(crc, alphabet, 6)


def test_base62_checksum_is_zero_padded_to_six():
    rng = random.Random(62)
    body, check = _zero_padded(rng, ALNUM)
    assert check[0] == "0"
    assert cs.crc32_base62("ghp_" + body + check, prefix="ghp_")
    assert not cs.crc32_base62("ghp_" + body + check[1:], prefix="ghp_")  # unpadded (DataDog's bug) is wrong
    body, check = _zero_padded(rng, ALNUM_LOWER_FIRST, "apify_api_")
    token = "apify_api_" + body + check
    assert check[0] == "0"
    assert cs.crc32_base62(token, prefix="apify_api_", hash_prefix=True, alphabet="0-9a-zA-Z")
    # the public vectors include real zero-padded checksums
    assert sum(t[-6] == "0" for t in REVOKED_GHP) == 7


def test_base62_leading_digit_above_4_is_rejected_before_hashing():
    token = "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"
    assert not cs.crc32_base62(token[:-6] + "5" + token[-5:], prefix="ghp_")


def test_base36_checksum_is_zero_padded_to_seven():
    rng = random.Random(36)
    while True:
        text = "glpat-" + "".join(rng.choice(B64_URL) for _ in range(27)) + ".01.0r"
        if zlib.crc32(text.encode()) < 36**6:
            break
    check = encode_base(zlib.crc32(text.encode()), "0123456789abcdefghijklmnopqrstuvwxyz", 7)
    assert check[0] == "0" and cs.crc32_base36(text + check)
    assert not cs.crc32_base36(text + check[1:])


def test_alphabet_order_and_prefix_hashing_are_not_interchangeable():
    ghp = VECTORS["github-classic-pat"][0]
    assert not cs.crc32_base62(ghp, prefix="ghp_", alphabet="0-9a-zA-Z")
    assert not cs.crc32_base62(ghp, prefix="ghp_", hash_prefix=True)
    deno = VECTORS["deno-deploy-token"][0]
    assert not cs.crc32_base62(deno, prefix="ddp_")
    apify = VECTORS["apify-api-token"][0]
    assert not cs.crc32_base62(apify, prefix="apify_api_", hash_prefix=True)
    assert not cs.crc32_base62("bogus", alphabet="0-9")


def test_crc32_hex_variants():
    grafana = VECTORS["grafana-service-account-token"][0]
    assert not cs.crc32_hex(grafana, hash_prefix=True, separator="_")  # big-endian would be wrong
    atlassian = VECTORS["bitbucket-app-password"][0]
    assert not cs.crc32_hex(atlassian, hash_prefix=True)  # Atlassian writes upper-case hex
    assert not cs.crc32_hex(atlassian.lower(), hash_prefix=True, case="upper")
    cloudflare = VECTORS["cloudflare-user-api-token"][0]
    assert cs.crc32_hex(cloudflare)  # prefix inferred up to its '_' when the engine gives none
    assert not cs.crc32_hex(cloudflare, prefix="cfat_")


def test_azure_signature_and_seed_must_match():
    key = VECTORS["azure-storage-account-key"][0]
    assert cs.marvin32_identifiable(key, prefix="+ASt", seeds="Default0")
    assert not cs.marvin32_identifiable(key, prefix="+ABa", seeds="Default0")
    assert not cs.marvin32_identifiable(key, prefix="+ASt", seeds="AbAcct00")
    assert cs.marvin32_identifiable(key, prefix="+ASt", seeds="AbAcct00, Default0")
    assert not cs.marvin32_identifiable(key, prefix="+ASt", seeds="short")  # malformed seed list: False
    assert not cs.marvin32_identifiable(key + "=", prefix="+ASt", seeds="Default0")  # wrong padding
    rng = random.Random(3)
    functions = next(k for k in (GENERATORS["azure-functions-key"](rng) for _ in range(50)) if "-" in k or "_" in k)
    assert cs.marvin32_identifiable(functions, prefix="AzFu", seeds="Functi00,System00,Master00", url_safe=True)
    assert not cs.marvin32_identifiable(functions, prefix="AzFu", seeds="Functi00,System00,Master00")
    assert not cs.marvin32_identifiable(key[:-3] + "Q==", prefix="+ASt", seeds="Default0")


def test_cask_forms():
    short = VECTORS["azure-cask-key"][0]
    assert not cs.marvin32_cask(short[:-1])
    assert not cs.marvin32_cask(short.replace("JQQJ9", "JQQJ8"))
    long_key = GENERATORS["azure-cask-key"]
    rng = random.Random(5)
    seen = set()
    for _ in range(60):
        key = long_key(rng)
        seen.add(len(key))
        assert cs.marvin32_cask(key)
        if len(key) == 88:
            assert not cs.marvin32_cask(key[:84] + "AA==") or key[84:86] == "AA"
    assert seen == {84, 88}
    assert cs._ms_base62(b"\x00\x00\x00\x00") == "0000"
    assert cs._ms_base62(b"\x00\x00\x01\x00") == "0048"  # 256 = 4·62 + 8


def test_nats_seed_structure():
    seed = VECTORS["nats-nkey-seed"][0]
    assert cs.crc16_nkey(seed)
    assert not cs.crc16_nkey(seed[:-1])
    assert not cs.crc16_nkey(seed.lower())
    # a public user key (U...) has the same CRC but is not a seed
    raw = cs.base64.b32decode(seed + "======")
    public = bytes([20 << 3]) + raw[2:34]
    public += cs.crc16_xmodem(public).to_bytes(2, "little")
    text = cs.base64.b32encode(public).decode().rstrip("=")
    assert text.startswith("U") and not cs.crc16_nkey(text)


BIP173_VALID = ["A12UEL5L", "a12uel5l",
                "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
                "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw", "11" + "q" * 82 + "c8247j",
                "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w", "?1ezyfcl"]
BIP173_INVALID = ["\x201nwldj5", "\x7f1axkwrx", "pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3",
                  "de1lg7wt\xff", "A1G7SGD8", "10a06t8", "1qzzfhee",
                  "a1lqfn3a", "A1LQFN3A"]  # the last two are valid bech32m, which is a different checksum


def test_bech32_bip173_vectors():
    assert all(cs.bech32_decode(s) is not None for s in BIP173_VALID)
    assert all(cs.bech32_decode(s) is None for s in BIP173_INVALID)
    assert cs.bech32("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw", data_bytes=20)
    assert not cs.bech32("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")  # 20 bytes, not 32
    age = VECTORS["age-secret-key"][0]
    assert not cs.bech32(age[:20] + age[20:].lower())  # mixed case is invalid bech32


def test_base58check():
    wif = "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ"  # Bitcoin wiki WIF vector
    raw = cs.b58decode(wif)
    assert raw[0] == 0x80 and cs._sha256d(raw[:-4])[:4] == raw[-4:]
    assert not cs.bip32_base58check(wif)  # Base58Check, but not an extended private key
    xprv = VECTORS["bip32-extended-private-key"][0]
    assert not cs.bip32_base58check(xprv, prefix="tprv")
    assert not cs.bip32_base58check(xprv.replace("9", "0"))  # '0' is not base58


def _pgp_variants(armored: str) -> list[str]:
    return [armored.replace("\n", "\r\n"), armored.replace("\n", "\\n"),
            "\n".join("    " + line for line in armored.split("\n")).strip()]


@pytest.mark.parametrize("armored", [PGP_ECDSA, PGP_ONLY_SUBKEY])
def test_pgp_armor_with_escaped_or_windows_newlines_and_indentation(armored):
    for variant in _pgp_variants(armored):
        assert cs.openpgp_crc24(variant)


def test_pgp_without_crc_is_structure_only_and_a_public_key_is_not_a_private_key():
    no_crc = "\n".join(line for line in PGP_ECDSA.split("\n") if not line.startswith("=KLN8"))
    assert not cs.openpgp_crc24(no_crc)
    assert cs.openpgp_secret_key(no_crc)
    assert not cs.openpgp_secret_key(PGP_ECDSA)  # has a CRC: it is the checksum entry's
    relabelled = f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{PGP_PUBLIC_BODY}\n-----END PGP PRIVATE KEY BLOCK-----"
    data, crc = cs._parse_pgp_armor(relabelled)
    assert int.from_bytes(cs.base64.b64decode(crc), "big") == cs.crc24(data)  # the CRC itself is right
    assert not cs.openpgp_crc24(relabelled)


def test_putty_versions_and_encryption():
    assert cs.putty_mac(PUTTY_V3) and not cs.putty_encrypted(PUTTY_V3)
    assert cs.putty_encrypted(PUTTY_V3_ENCRYPTED) and not cs.putty_mac(PUTTY_V3_ENCRYPTED)
    assert cs.putty_mac(PUTTY_V3.replace("\n", "\r\n"))
    assert cs.putty_mac(PUTTY_V3.replace("\n", "\\n"))
    assert not cs.putty_mac(PUTTY_V3.replace("Comment: rsa-key-20220216", "Comment: rsa-key-20220217"))
    assert not cs.putty_mac(PUTTY_V3.replace("File-3", "File-2"))  # the v2 MAC algorithm disagrees
    assert not cs.putty_mac(PUTTY_V3.replace("21ef", "21EF"))  # same MAC bytes, but not how PuTTY writes it
    rng = random.Random(2)
    versions = set()
    for _ in range(20):
        ppk = GENERATORS["putty-private-key"](rng)
        versions.add(ppk[20])
        assert cs.putty_mac(ppk)
    assert versions == {"2", "3"}


def test_openssh_encrypted_is_structure_only():
    assert cs.openssh_encrypted(OPENSSH_RSA_ENCRYPTED) and not cs.openssh_checkint(OPENSSH_RSA_ENCRYPTED)
    assert cs.openssh_checkint(OPENSSH_ED25519) and not cs.openssh_encrypted(OPENSSH_ED25519)
    assert cs.openssh_checkint(OPENSSH_ED25519.replace("\n", "\\n"))


VALIDATOR_FUNCS = sorted({_checksum(e)[0] for e in ENTRIES.values()})


@pytest.mark.parametrize("name", VALIDATOR_FUNCS)
@settings(max_examples=60, deadline=None)
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      st.sampled_from([t for ts in VECTORS.values() for t in ts]).map(lambda t: t[: len(t) // 2])))
def test_validators_never_raise_on_malformed_input(name, text):
    validator = REGISTRY[name]
    params = {"prefix": text[:4]} if "prefix" in validator.params else {}
    assert validator.func(text, **params) in (True, False)
    assert validator.func(text.encode("utf-8"), **params) is False  # not a str
    assert validator.func(None) is False


# --- through the real Detector with the built-in profile ------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def detector(request):
    return Detector(load_profiles([PROFILE_PATH]), backend=request.param)


ARMORED = {"pgp-private-key", "pgp-private-key-no-crc", "putty-private-key", "putty-private-key-encrypted",
           "openssh-private-key", "openssh-private-key-encrypted"}


def contexts(token: str) -> list[tuple[str, str, str]]:
    """(left, token as written there, right) for the places traffic carries a credential."""
    escaped = json.dumps(token)[1:-1]  # JSON-escaped: multi-line keys become `\n`
    return [
        ('{"token": "', escaped, '", "n": 1}'),
        ("export API_KEY=", token, "\n"),
        ("https://user:", token, "@api.example.com/v1"),
        ("https://api.example.com/v1/things?key=", token, "&page=2"),
        ("<config><secret>", token, "</secret></config>"),
        ("key = '", token, "'"),
        ('key = "', token, '"'),
        ("first line\n", token, "\nlast line"),
        ("Authorization: Bearer ", token, "\r\n"),
    ]


def _findings(detector, text: str):
    return [(f.entry_id, f.start, f.end, f.validated) for f in detector.scan(text.encode("latin-1"))]


@pytest.mark.parametrize("entry_id", sorted(GENERATORS))
def test_generated_tokens_are_found_in_context_with_exact_offsets(detector, entry_id):
    rng = random.Random(f"context:{entry_id}")
    for _ in range(6):
        token = GENERATORS[entry_id](rng)
        for left, written, right in contexts(token):
            found = _findings(detector, left + written + right)
            assert found == [(entry_id, len(left), len(left) + len(written), kind(entry_id))], (left, right)


def _glue_chars(entry_id: str) -> list[str]:
    boundary = ENTRIES[entry_id].get("boundary", "A-Za-z0-9")
    cls = re.compile(f"[{boundary}]")
    return [c for c in "aZ7_-+/.~" if cls.fullmatch(c)]


def _glued_rule(detector, entry_id: str) -> tuple[bool, bool]:
    """(left glue found, right glue found): a strong checksum over a token of fixed extent is its own evidence."""
    targets = [t for ts in detector._targets for t in ts if t.entry.id == entry_id]
    glue_ok = all(t.glue_ok for t in targets)
    left = glue_ok and all(not t.max_before or t.fixed_before for t in targets)
    right = glue_ok and all(pattern_width(t.entry.pattern)[0] == pattern_width(t.entry.pattern)[1] for t in targets)
    return left, right


@pytest.mark.parametrize("entry_id", sorted(GENERATORS))
def test_tokens_glued_to_more_token_characters(detector, entry_id):
    """Checksummed tokens are found whatever is glued to them (length bytes of binary formats, `\\n` of JSON
    nobody unescaped); shape-only and weak-checksum matches still need a boundary."""
    left_found, right_found = _glued_rule(detector, entry_id)
    rng = random.Random(f"glue:{entry_id}")
    for _ in range(4):
        token = GENERATORS[entry_id](rng)
        assert _findings(detector, " " + token + " ")
        exact_left = [(entry_id, 2, 2 + len(token), kind(entry_id))]
        exact_right = [(entry_id, 1, 1 + len(token), kind(entry_id))]
        for c in _glue_chars(entry_id):
            assert _findings(detector, " " + c + token + " ") == (exact_left if left_found else []), ("left", c)
            right = _findings(detector, " " + token + c + " ")
            if right_found:
                assert right == exact_right, ("right", c)
            else:  # a longer match fails its checksum, or the token is found exactly
                assert right in ([], exact_right) if kind(entry_id) == "checksum" else right == [], ("right", c)


def test_boundaries_that_are_not_token_characters(detector):
    """`=` and `.` end tokens whose alphabet uses them only as fixed separators or padding."""
    azure = VECTORS["azure-storage-account-key"][0]
    text = f"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={azure};EndpointSuffix=core.windows.net"
    start = text.index(azure)
    assert _findings(detector, text) == [("azure-storage-account-key", start, start + len(azure), "checksum")]
    atlassian = VECTORS["atlassian-api-token"][0]
    assert _findings(detector, f"JIRA_TOKEN={atlassian}") == [("atlassian-api-token", 11, 11 + 192, "checksum")]
    gitlab = VECTORS["gitlab-routable-token"][0]
    sentence = f"Use {gitlab}."
    assert _findings(detector, sentence) == [("gitlab-routable-token", 4, 4 + len(gitlab), "checksum")]


def test_stateless_ghs_is_not_the_crc_entry(detector):
    stateless = "ghs_123456_eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjM0NTYifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
    assert all(f[0] != "github-app-installation-token" for f in _findings(detector, stateless))


@pytest.mark.parametrize("entry_id", sorted(ENTRIES))
def test_profile_examples_and_counterexamples(detector, entry_id):
    entry = ENTRIES[entry_id]
    assert entry["examples"] and entry["counterexamples"]
    for example in entry["examples"]:
        assert _findings(detector, example) == [(entry_id, 0, len(example), kind(entry_id))]
    for counter in entry["counterexamples"]:
        assert _findings(detector, counter) == []


def test_several_tokens_in_one_buffer(detector):
    rng = random.Random(11)
    tokens = [(e, GENERATORS[e](rng)) for e in sorted(GENERATORS)]
    text, expected = "", []
    for entry_id, token in tokens:
        text += f"\n{entry_id}: "
        expected.append((entry_id, len(text), len(text) + len(token), kind(entry_id)))
        text += token
    assert _findings(detector, text + "\n") == expected
