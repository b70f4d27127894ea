#!/usr/bin/env python3
"""Interop with the official Python SDKs, both directions:

1. each SDK signs a request; hookguard (`examples/interop.rs verify`) must accept it, and
   must refuse the same request with its body changed;
2. hookguard (`examples/interop.rs sign`) signs; the SDK's own verify function must
   accept it.

Usage: interop.py <path to the interop example binary>. Exits non-zero on any failure.
"""
import datetime
import json
import subprocess
import sys
import time
import urllib.parse

import standardwebhooks
import stripe
import svix.webhooks
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator

BIN = sys.argv[1]
NOW = int(time.time())
BODY = '{"type":"invoice.paid","id":"evt_1","amount":4200,"note":"caf\u00e9 \u2713"}'
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STRIPE_SECRET = "whsec_stripe_interop_secret"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
FORM = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234", "Body": "hi there & more"}

failures = []


def hookguard(mode, cases):
    out = subprocess.run([BIN, mode], input=json.dumps(cases), capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (f" ({detail})" if detail and not ok else ""))
    if not ok:
        failures.append(name)


def sdk_signed():
    """(name, case) pairs signed by the SDKs, for hookguard to verify."""
    at = datetime.datetime.fromtimestamp(NOW, tz=datetime.timezone.utc)
    sw = standardwebhooks.Webhook(SW_SECRET).sign("msg_interop_1", at, BODY)
    yield "standardwebhooks.sign", {
        "preset": "standard-webhooks", "secrets": [SW_SECRET], "body": BODY,
        "headers": {"webhook-id": "msg_interop_1", "webhook-timestamp": str(NOW), "webhook-signature": sw}}
    sv = svix.webhooks.Webhook(SW_SECRET).sign("msg_interop_2", at, BODY)
    yield "svix.sign", {
        "preset": "svix", "secrets": [SW_SECRET], "body": BODY,
        "headers": {"svix-id": "msg_interop_2", "svix-timestamp": str(NOW), "svix-signature": sv}}
    st = stripe.WebhookSignature.generate_signature_header(BODY, STRIPE_SECRET, timestamp=NOW)
    yield "stripe.WebhookSignature.generate_signature_header", {
        "preset": "stripe", "secrets": [STRIPE_SECRET], "body": BODY, "headers": {"stripe-signature": st}}
    sl = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=str(NOW), body=BODY)
    yield "slack_sdk.SignatureVerifier.generate_signature", {
        "preset": "slack", "secrets": [SLACK_SECRET], "body": BODY,
        "headers": {"x-slack-request-timestamp": str(NOW), "x-slack-signature": sl}}
    validator = RequestValidator(TWILIO_TOKEN)
    form = urllib.parse.urlencode(FORM)
    yield "twilio.RequestValidator.compute_signature (form)", {
        "preset": "twilio", "secrets": [TWILIO_TOKEN], "body": form, "url": TWILIO_URL,
        "headers": {"content-type": "application/x-www-form-urlencoded",
                    "x-twilio-signature": validator.compute_signature(TWILIO_URL, FORM)}}
    json_url = f"{TWILIO_URL}&bodySHA256={validator.compute_hash(BODY)}"
    yield "twilio.RequestValidator.compute_signature (JSON, bodySHA256)", {
        "preset": "twilio", "secrets": [TWILIO_TOKEN], "body": BODY, "url": json_url,
        "headers": {"content-type": "application/json",
                    "x-twilio-signature": validator.compute_signature(json_url, {})}}


def sdk_verifies():
    """(name, case to sign, SDK check of hookguard's headers)."""
    def sw_check(cls):
        def run(h):
            cls(SW_SECRET).verify(BODY, h)
            return True
        return run
    yield "standardwebhooks.verify", {"preset": "standard-webhooks", "secrets": [SW_SECRET], "body": BODY,
                                      "id": "msg_hg_1", "timestamp": NOW}, sw_check(standardwebhooks.Webhook)
    yield "svix.verify", {"preset": "svix", "secrets": [SW_SECRET], "body": BODY,
                          "id": "msg_hg_2", "timestamp": NOW}, sw_check(svix.webhooks.Webhook)

    def stripe_check(h):
        return stripe.WebhookSignature.verify_header(BODY, h["stripe-signature"], STRIPE_SECRET, tolerance=300)
    yield "stripe.WebhookSignature.verify_header", {"preset": "stripe", "secrets": [STRIPE_SECRET], "body": BODY,
                                                    "timestamp": NOW}, stripe_check

    def slack_check(h):
        return SignatureVerifier(SLACK_SECRET).is_valid(BODY, h["x-slack-request-timestamp"], h["x-slack-signature"])
    yield "slack_sdk.SignatureVerifier.is_valid", {"preset": "slack", "secrets": [SLACK_SECRET], "body": BODY,
                                                   "timestamp": NOW}, slack_check

    def twilio_form(h):
        return RequestValidator(TWILIO_TOKEN).validate(TWILIO_URL, FORM, h["x-twilio-signature"])
    yield "twilio.RequestValidator.validate (form)", {"preset": "twilio", "secrets": [TWILIO_TOKEN],
                                                      "body": urllib.parse.urlencode(FORM), "url": TWILIO_URL}, twilio_form
    json_url = f"{TWILIO_URL}&bodySHA256={RequestValidator(TWILIO_TOKEN).compute_hash(BODY)}"

    def twilio_json(h):
        return RequestValidator(TWILIO_TOKEN).validate(json_url, BODY, h["x-twilio-signature"])
    yield "twilio.RequestValidator.validate (JSON, bodySHA256)", {"preset": "twilio", "secrets": [TWILIO_TOKEN],
                                                                  "body": BODY, "url": json_url}, twilio_json


def main():
    signed = list(sdk_signed())
    cases = [c for _, c in signed]
    tampered = [dict(c, body=c["body"].replace("4200", "4201").replace("1234", "1235")) for c in cases]
    answers = hookguard("verify", cases + tampered)
    for (name, _), got in zip(signed, answers[: len(cases)]):
        check(f"SDK → hookguard: {name}", got.get("ok") is True, got)
    for (name, _), got in zip(signed, answers[len(cases):]):
        check(f"SDK → hookguard, body changed, refused: {name}", got.get("ok") is False, got)

    verifies = list(sdk_verifies())
    headers = hookguard("sign", [c for _, c, _ in verifies])
    for (name, _, sdk_check), got in zip(verifies, headers):
        try:
            ok = bool(sdk_check(got["headers"]))
            check(f"hookguard → SDK: {name}", ok, got)
        except Exception as e:  # the SDK's verify raises on a bad signature
            check(f"hookguard → SDK: {name}", False, f"{type(e).__name__}: {e}; {got}")
    if failures:
        print(f"{len(failures)} interop check(s) failed", file=sys.stderr)
        sys.exit(1)


main()
