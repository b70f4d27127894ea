#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from the provider vectors (PROVIDERS.md, the providers'
tests). Re-run after adding a vector; the files are committed, so CI does not need Python
for fuzzing. The public-key seeds need the `cryptography` package (Ed25519, and
deterministic ECDSA: version 44 or later)."""
import base64, codecs, hashlib, hmac, os, pathlib, re, struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ROOT = pathlib.Path(__file__).resolve().parent
PROVIDERS = ROOT.parent.parent / "src" / "providers"


def rust_const(file, name):
    """A `const NAME: &str` or `&[u8]` of a provider's tests, as bytes."""
    text = (PROVIDERS / file).read_text()
    m = re.search(r"const " + name + r': &(?:\[u8\]|str) =\s*(b?)(r#)?"(.*?)"#?;', text, re.S)
    value = m.group(3)
    return value.encode() if m.group(2) else codecs.decode(value, "unicode_escape").encode("latin-1")

SLACK_BODY = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
              "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
              "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
              "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SQUARE_BODY = ('{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f",'
               '"created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}')
stripe_body = '{"id":"evt_1","object":"event"}'
stripe_sig = hmac.new(b"whsec_test", f"1614265330.{stripe_body}".encode(), hashlib.sha256).hexdigest()
# Twilio with a Webhooks Setting's shared key: HMAC-SHA256 over the URL and the sorted parameters.
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_FORM = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212"
twilio_signed = TWILIO_URL + "CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212"
twilio_sha256 = base64.b64encode(hmac.new(b"twilio-shared-key", twilio_signed.encode(), hashlib.sha256).digest()).decode()

# (file, preset, secret, now, "METHOD URL", headers, body)
REQUESTS = [
    ("standard_webhooks_1", "standard-webhooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1614265330, "POST https://example.com/hooks",
     [("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("webhook-timestamp", "1614265330"),
      ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")], '{"test": 2432232314}'),
    ("standard_webhooks_2", "standard-webhooks", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", 1649367553, "POST https://example.com/hooks",
     [("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"), ("webhook-timestamp", "1649367553"),
      ("webhook-signature", "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw= v1a,AAAA")], '{"email":"test@example.com","username":"test_user"}'),
    ("svix", "svix", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1614265330, "POST https://example.com/hooks",
     [("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("svix-timestamp", "1614265330"),
      ("svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")], '{"test": 2432232314}'),
    ("standard_webhooks_v1a", "standard-webhooks-v1a", "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=", 1614265330, "POST https://example.com/hooks",
     [("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("webhook-timestamp", "1614265330"),
      ("webhook-signature", "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==")], '{"test": 2432232314}'),
    # Discord's and SendGrid's published vectors, under their own public keys.
    ("discord", "discord", rust_const("discord.rs", "PUBLIC_KEY").decode(), 1657322078, "POST https://example.com/interactions",
     [("x-signature-ed25519", rust_const("discord.rs", "SIG").decode()), ("x-signature-timestamp", "1657322078")],
     rust_const("discord.rs", "BODY").decode()),
    ("sendgrid", "sendgrid", rust_const("sendgrid.rs", "KEY_A").decode(), 1600112502, "POST https://example.com/hooks",
     [("x-twilio-email-event-webhook-signature", rust_const("sendgrid.rs", "SIG_A").decode()),
      ("x-twilio-email-event-webhook-timestamp", "1600112502")], rust_const("sendgrid.rs", "PAYLOAD").decode()),
    ("stripe", "stripe", "whsec_test", 1614265330, "POST https://example.com/hooks",
     [("stripe-signature", f"t=1614265330,v1={stripe_sig},v0=00")], stripe_body),
    ("github_1", "github", "It's a Secret to Everybody", 0, "POST https://example.com/hooks",
     [("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"), ("x-github-delivery", "d-1")], "Hello, World!"),
    ("github_2", "github", "mysecret", 0, "POST https://example.com/hooks",
     [("x-hub-signature-256", "sha256=4864D2759938A15468B5DF9ADE20BF161DA9B4F737EA61794142F3484236BDA3")], '{"foo":"bar"}'),
    ("slack", "slack", "8f742231b10e8888abcd99yyyzzz85a5", 1531420618, "POST https://example.com/hooks",
     [("x-slack-request-timestamp", "1531420618"), ("x-slack-signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")], SLACK_BODY),
    ("twilio_form", "twilio", "12345", 0, "POST https://mycompany.com/myapp.php?foo=1&bar=2",
     [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")],
     "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212"),
    ("twilio_json", "twilio", "12345", 0,
     "POST https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620",
     [("content-type", "application/json"), ("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4=")], '{"property": "value", "boolean": true}'),
    ("twilio_sha256", "twilio", "twilio-shared-key", 0, f"POST {TWILIO_URL}",
     [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", twilio_sha256),
      ("x-twilio-webhooks-signature-settings", "key=my-setting,algorithm=HMAC_SHA256")], TWILIO_FORM),
    ("paddle", "paddle", "VALID_SECRET", 1698796800, "POST https://example.com/hooks",
     [("paddle-signature", "ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9")], '{"data": ["1", "2"]}'),
    ("square", "square", "Ibxx_5AKakO-3qeNVR61Dw", 0, "POST https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9",
     [("x-square-hmacsha256-signature", "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=")], SQUARE_BODY),
    ("hubspot_v3", "hubspot", "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy", 15060, "POST https://www.example.com/webhook_uri",
     [("x-hubspot-signature-v3", "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="), ("x-hubspot-request-timestamp", "15000000")],
     "{'example_field':'example_value'}"),
    ("hubspot_v2", "hubspot-v2", "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy", 0, "GET https://www.example.com/webhook_uri",
     [("x-hubspot-signature", "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"), ("x-hubspot-signature-version", "v2")], ""),
    ("shopify", "shopify", "test_secret_key", 0, "POST https://example.com/hooks",
     [("x-shopify-hmac-sha256", "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=")], '{"foo": "bar"}'),
]

# The public-key presets' fixed keys in the verify_presets target (`fixed_key`): requests
# signed with their private keys, with an empty secret line (the fixed key alone).
ED25519_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(
    base64.b64decode("VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="))  # whsk_…, Standard Webhooks' Go tests
ECDSA_KEY = serialization.load_der_private_key(base64.b64decode(rust_const("sendgrid.rs", "PRIVATE_C")), None)
AT = 1700000000
V1A_BODY = '{"type":"invoice.paid","data":{"id":"in_1"}}'
v1a_sig = base64.b64encode(ED25519_KEY.sign(f"msg_fixed.{AT}.{V1A_BODY}".encode())).decode()
# Four v1a entries, the most a request may carry, the good one last; v1 entries are not counted.
v1a_header = " ".join(["v1,AAAA"] + [f"v1a,{base64.b64encode(bytes(64)).decode()}"] * 3 + [f"v1a,{v1a_sig}"])
DISCORD_BODY = '{"type":2,"id":"1","application_id":"2","data":{"name":"ping"}}'
discord_sig = ED25519_KEY.sign(f"{AT}{DISCORD_BODY}".encode()).hex()
SENDGRID_BODY = '[{"email":"a@example.com","event":"delivered","sg_event_id":"e1","timestamp":1700000000}]\r\n'
sendgrid_der = ECDSA_KEY.sign(f"{AT}{SENDGRID_BODY}".encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
r, s_ = decode_dss_signature(sendgrid_der)
sendgrid_rs = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
SENDGRID_HEADERS = lambda sig: [("x-twilio-email-event-webhook-signature", base64.b64encode(sig).decode()),
                                ("x-twilio-email-event-webhook-timestamp", str(AT))]
REQUESTS += [
    ("standard_webhooks_v1a_fixed", "standard-webhooks-v1a", "", AT, "POST https://example.com/hooks",
     [("webhook-id", "msg_fixed"), ("webhook-timestamp", str(AT)), ("webhook-signature", v1a_header)], V1A_BODY),
    ("discord_fixed", "discord", "", AT, "POST https://example.com/interactions",
     [("x-signature-ed25519", discord_sig), ("x-signature-timestamp", str(AT))], DISCORD_BODY),
    ("sendgrid_fixed_der", "sendgrid", "", AT, "POST https://example.com/hooks", SENDGRID_HEADERS(sendgrid_der), SENDGRID_BODY),
    ("sendgrid_fixed_rs", "sendgrid", "", AT, "POST https://example.com/hooks", SENDGRID_HEADERS(sendgrid_rs), SENDGRID_BODY),
]


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


for name, preset, secret, now, target, headers, body in REQUESTS:
    text = f"{preset}\n{secret}\n{now}\n{target}\n" + "".join(f"{k}: {v}\n" for k, v in headers) + "\n" + body
    write("verify_presets", name, text.encode())
    for k, v in headers:
        if ("signature" in k or "hmac" in k) and not k.endswith("-settings"):
            # signature_header: format byte, encoding byte (0 hex, 1 base64), values.
            fmt = {"webhook-signature": 7, "svix-signature": 7, "stripe-signature": 4, "paddle-signature": 5,
                   "x-hub-signature-256": 0, "x-slack-signature": 2}.get(k, 3)
            fmt = 8 if preset == "standard-webhooks-v1a" else fmt
            enc = 1 if fmt == 7 or v.endswith("=") else 0
            write("signature_header", name, bytes([fmt, enc]) + v.encode() + b"\n" + v.encode())
            write("encoding", name, v.split("=", 1)[-1].split(",")[-1].encode() if fmt != 3 else v.encode())
        if "timestamp" in k:
            write("timestamp", name, v.encode())
write("timestamp", "rfc3339", b"2022-07-13T20:30:59.037339943Z")
write("timestamp", "millis", b"1564113600000")

github = [(b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", b"Hello, World!"),
          (b"sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3", b'{"foo":"bar"}')]
for i, (sig, body) in enumerate(github):
    # problem: 8 control bytes, `<signature>\n<body>`.
    write("problem", f"github_{i}", bytes([2, 2, 1, 0, 1, 0x91, 0x01, 3]) + sig + b"\n" + body)
    # body_gate: limit (2), end, chunk size, repeat, sign, declared, extra; then the body.
    write("body_gate", f"github_{i}", struct.pack("<H", 64) + bytes([0, 3, 0, 1, 1, 0]) + body)
    write("body_gate", f"github_{i}_over", struct.pack("<H", 64) + bytes([1, 5, 20, 1, 0, 0]) + body)
    write("body_gate", f"github_{i}_stall", struct.pack("<H", 4096) + bytes([3, 0, 0, 1, 2, 7]) + body)

# handshakes: 4 control bytes (the first picks Meta's verify token: 0 is "meta-verify"),
# `METHOD URL`, header lines, an empty line, the body. One request per provider handshake,
# from the providers' docs.
HANDSHAKES = [
    ("slack", "POST /hooks/slack", [("content-type", "application/json")],
     '{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}'),
    ("zoom", "POST /hooks/zoom", [("content-type", "application/json")],
     '{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}'),
    ("twitch", "POST /hooks/twitch", [("twitch-eventsub-message-type", "webhook_callback_verification")],
     '{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"type":"channel.follow"}}'),
    ("discord", "POST /hooks/discord", [("content-type", "application/json")], '{"type":1,"id":"1","application_id":"2"}'),
    ("meta", "GET /hooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta-verify", [], ""),
    ("dropbox", "GET /hooks/dropbox?challenge=a%20b+c", [], ""),
    ("trello", "HEAD /hooks/trello", [], ""),
    ("asana", "POST /hooks/asana", [("x-hook-secret", "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81")], ""),
]
for name, target, headers, body in HANDSHAKES:
    text = f"{target}\n" + "".join(f"{k}: {v}\n" for k, v in headers) + "\n" + body
    write("handshakes", name, bytes(4) + text.encode())

# paypal: a mode byte (0 certificate, 1 URL, 2 request), then the input. The request is the
# PayPal Java SDK vector (src/providers/testdata).
TESTDATA = ROOT.parent.parent / "src" / "providers" / "testdata"
paypal_headers = [
    ("paypal-transmission-id", "afa30d40-ca4a-11e9-ab68-7d4e2605c70c"),
    ("paypal-transmission-time", "2019-08-29T10:49:33Z"),
    ("paypal-transmission-sig", "K7DF5+hOyGS6v0xTZ9PkEO+BFNQmpryxw2hFlXbHgmxpu+883ldEC9HcL6ccEmB8sfy80y/Q3qcZZL1MR8Qi0e1ysylVj/yROgKK6zBsQPoNmgXC8yTiNoAjULuhk5Aoau0Itk3nrkgAfji1zvADlErMFM9VZe2nDvhM3nDMLjCi/K5fRjWp3eGo6Nx17GX/WIEibeKDyS+YdJMex3i+KO4aWmm9zznC/FJ5Y/ntd0MxOJNrM0r0f3y7c3e3sO5pB3oPgN6KzKVS5P6AWHqtS8acD3DjgCKZ1uqKz7q954G1aBz2/m0wRGOFFsv0/D3FE2uIheRRmoQtVSOAX7Aupg=="),
    ("paypal-cert-url", "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270"),
    ("paypal-auth-algo", "SHA256withRSA"),
]
write("paypal", "vector", b"\x02" + "".join(f"{k}: {v}\n" for k, v in paypal_headers).encode() + b"\n"
      + (TESTDATA / "paypal_body.json").read_bytes())
write("paypal", "certificate", b"\x00" + (TESTDATA / "paypal_cert.pem").read_bytes())
write("paypal", "url", b"\x01" + paypal_headers[3][1].encode())

# paypal_fetch: a mode byte (0 certificate bytes, 1 URL, 2 request; for a request, the byte
# / 3 picks the tolerance), the clock (Unix seconds, i64 little-endian), then the input.
PAYPAL_SENT = 1567075773  # 2019-08-29T10:49:33Z, when the vector was sent
src_paypal_fetch = (ROOT.parent.parent / "src" / "paypal_fetch.rs").read_text()
m = re.search(r'const SELF_SIGNED: &\[u8\] = b"(.*?)";', src_paypal_fetch, re.S)
self_signed = codecs.decode(re.sub(r"\\\n\s*", "", m.group(1)), "unicode_escape").encode("latin-1")
paypal_cert = (TESTDATA / "paypal_cert.pem").read_bytes()
paypal_request = "".join(f"{k}: {v}\n" for k, v in paypal_headers).encode() + b"\n" + (TESTDATA / "paypal_body.json").read_bytes()
at = lambda secs: struct.pack("<q", secs)
write("paypal_fetch", "certificate", b"\x00" + at(PAYPAL_SENT) + paypal_cert)
write("paypal_fetch", "certificate_chain", b"\x00" + at(PAYPAL_SENT) + paypal_cert + paypal_cert)
write("paypal_fetch", "certificate_expired", b"\x00" + at(1621857601) + paypal_cert)
# Self-signed in PayPal's name (2026-12-07 to 2126-11-13): trusted on names and dates alone.
write("paypal_fetch", "self_signed", b"\x00" + at(1798761600) + self_signed)
write("paypal_fetch", "url", b"\x01" + at(PAYPAL_SENT) + paypal_headers[3][1].encode())
write("paypal_fetch", "url_spelling", b"\x01" + at(PAYPAL_SENT)
      + b"hTTps://API.Sandbox.PayPal.com.:443/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270 ")
write("paypal_fetch", "vector", b"\x02" + at(PAYPAL_SENT) + paypal_request)
write("paypal_fetch", "vector_no_tolerance", b"\x05" + at(PAYPAL_SENT + 30 * 24 * 3600) + paypal_request)
