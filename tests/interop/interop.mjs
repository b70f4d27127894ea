// Interop with the official Node SDKs, both directions (see interop.py).
// Usage: node interop.mjs <path to the interop example binary>.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { sign, verify } from '@octokit/webhooks-methods';

const require = createRequire(import.meta.url);
const Stripe = require('stripe');
const stripe = new Stripe('sk_test_interop_offline');

const BIN = process.argv[2];
const NOW = Math.floor(Date.now() / 1000);
const BODY = '{"action":"opened","number":42,"note":"caf\u00e9 \u2713"}';
const GH_SECRET = "It's a Secret to Everybody";
const STRIPE_SECRET = 'whsec_stripe_interop_secret';
const failures = [];

const hookguard = (mode, cases) => JSON.parse(execFileSync(BIN, [mode], { input: JSON.stringify(cases) }).toString());
const check = (name, ok, detail) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : ` (${JSON.stringify(detail)})`}`);
  if (!ok) failures.push(name);
};

// SDK → hookguard
const signed = [
  ['@octokit/webhooks-methods sign', { preset: 'github', secrets: [GH_SECRET], body: BODY,
    headers: { 'x-hub-signature-256': await sign(GH_SECRET, BODY), 'x-github-delivery': 'd-interop' } }],
  ['stripe.webhooks.generateTestHeaderString', { preset: 'stripe', secrets: [STRIPE_SECRET], body: BODY,
    headers: { 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: BODY, secret: STRIPE_SECRET, timestamp: NOW }) } }],
];
const cases = signed.map(([, c]) => c);
const tampered = cases.map((c) => ({ ...c, body: c.body.replace('42', '43') }));
const answers = hookguard('verify', [...cases, ...tampered]);
signed.forEach(([name], i) => check(`SDK → hookguard: ${name}`, answers[i].ok === true, answers[i]));
signed.forEach(([name], i) => check(`SDK → hookguard, body changed, refused: ${name}`, answers[cases.length + i].ok === false, answers[cases.length + i]));

// hookguard → SDK
const [gh, st] = hookguard('sign', [
  { preset: 'github', secrets: [GH_SECRET], body: BODY },
  { preset: 'stripe', secrets: [STRIPE_SECRET], body: BODY, timestamp: NOW },
]);
check('hookguard → SDK: @octokit/webhooks-methods verify', await verify(GH_SECRET, BODY, gh.headers['x-hub-signature-256']), gh);
try {
  const event = stripe.webhooks.constructEvent(BODY, st.headers['stripe-signature'], STRIPE_SECRET, 300);
  check('hookguard → SDK: stripe.webhooks.constructEvent', event.number === 42, event);
} catch (e) {
  check('hookguard → SDK: stripe.webhooks.constructEvent', false, String(e));
}

if (failures.length) {
  console.error(`${failures.length} interop check(s) failed`);
  process.exit(1);
}
