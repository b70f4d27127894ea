//! The HMAC presets verify without touching the heap on the success path (the scheme
//! and the request are built first; only `verify` is counted), and reject a wrong
//! signature with at most a few allocations.
//!
//! Counting is per thread, so tests running in parallel do not disturb each other. To
//! cover another preset, add a row to [`cases`].

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use hookguard::{
    providers::{Preset, github, standard_webhooks, stripe},
    verify::{Outgoing, Reason, Scheme, WebhookRequest},
};
use http::{HeaderName, HeaderValue};
use time::OffsetDateTime;

// ---------------------------------------------------------------------------------------
// A counting allocator: every allocation made by the current thread while counting is on.

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards every call unchanged to `System`; only bumps a thread-local counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the number of allocations this thread made.
fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, COUNT.with(Cell::get))
}

// ---------------------------------------------------------------------------------------
// The rows.

/// One preset with a request it accepts and one it refuses as a signature mismatch.
struct Case {
    name: &'static str,
    scheme: Box<dyn Scheme>,
    good: http::Request<Vec<u8>>,
    bad: http::Request<Vec<u8>>,
    now: OffsetDateTime,
}

impl Case {
    /// A row for a preset that can sign: `msg` is signed with the scheme itself, `extra`
    /// headers are added (delivery ids, event names the provider sends beside the
    /// signature), and the bad request is the good one with one character of the
    /// signature header changed.
    fn signed(
        name: &'static str,
        scheme: impl Preset + 'static,
        msg: Outgoing<'_>,
        extra: &[(&'static str, &'static str)],
        now: OffsetDateTime,
    ) -> Self {
        let signed = scheme.sign(&msg).expect("the preset signs");
        let sig_name = signed[0].0.clone();
        let build = |flip: bool| {
            let mut req = http::Request::post("/hooks");
            for (header, value) in &signed {
                let value = if flip && *header == sig_name { flip_middle(value) } else { value.clone() };
                req = req.header(header, value);
            }
            for (header, value) in extra {
                req = req.header(HeaderName::from_static(header), *value);
            }
            req.body(msg.body().to_vec()).expect("valid request")
        };
        Self { name, scheme: Box::new(scheme), good: build(false), bad: build(true), now }
    }
}

/// Changes the first alphanumeric character from the middle of a header value on to
/// another of the same class, so the signature still decodes but no longer matches.
fn flip_middle(value: &HeaderValue) -> HeaderValue {
    let mut bytes = value.as_bytes().to_vec();
    let i = (bytes.len() / 2..bytes.len())
        .find(|&i| bytes[i].is_ascii_alphanumeric())
        .unwrap_or_else(|| panic!("no alphanumeric character after the middle of {value:?}"));
    // Pairs within a class (0↔1, a↔b, e↔f, Y↔Z): hex stays hex, base64 stays base64.
    bytes[i] = match bytes[i] {
        c @ b'0'..=b'9' => b'0' + ((c - b'0') ^ 1),
        c @ b'a'..=b'z' => b'a' + ((c - b'a') ^ 1),
        c => b'A' + ((c - b'A') ^ 1),
    };
    HeaderValue::from_bytes(&bytes).expect("still a header value")
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).expect("in range")
}

const JSON: &[u8] = br#"{"id":"evt_1NqN2p","type":"invoice.paid","data":{"object":{"amount":1200,"currency":"usd","lines":[1,2,3]}}}"#;

/// Add a preset here: one row each.
fn cases() -> Vec<Case> {
    let now = at(1_700_000_000);
    vec![
        Case::signed(
            "standard-webhooks",
            standard_webhooks::scheme("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            Outgoing::new(JSON).id("msg_p5jXN8AQM9LWM0D4loKWxJek").timestamp(now),
            &[],
            now,
        ),
        Case::signed(
            "stripe",
            stripe::scheme("whsec_test_secret").unwrap(),
            Outgoing::new(JSON).timestamp(now),
            &[],
            now,
        ),
        Case::signed(
            "github",
            github::scheme("It's a Secret to Everybody").unwrap(),
            Outgoing::new(JSON),
            &[("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"), ("x-github-event", "push")],
            now,
        ),
    ]
}

/// Allocations allowed on the rejection path (a `Rejection` holds no heap data today;
/// the bound leaves room for a detail that does).
const REJECTION_BOUND: usize = 2;

#[test]
fn success_path_allocates_nothing() {
    let mut failures = Vec::new();
    for case in cases() {
        let view = WebhookRequest::from_request(&case.good);
        for round in 0..5 {
            let (ok, count) = allocations(|| case.scheme.verify(&view, case.now).is_ok());
            assert!(ok, "{}: the good request verifies", case.name);
            if count != 0 {
                failures.push(format!("{}: round {round} allocated {count} times", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn success_path_fields_are_borrowed() {
    // The values a verified request carries come out without allocation as well.
    for case in cases() {
        let view = WebhookRequest::from_request(&case.good);
        let (lens, count) = allocations(|| {
            let v = case.scheme.verify(&view, case.now).expect("verifies");
            (v.id().map(str::len), v.event().map(str::len), v.dedup_key().len())
        });
        assert_eq!(count, 0, "{}: {lens:?}", case.name);
    }
}

#[test]
fn mismatch_allocates_at_most_a_little() {
    for case in cases() {
        let view = WebhookRequest::from_request(&case.bad);
        for _ in 0..5 {
            let (reason, count) =
                allocations(|| case.scheme.verify(&view, case.now).map(|_| ()).map_err(|r| r.reason()));
            assert_eq!(reason, Err(Reason::SignatureMismatch), "{}", case.name);
            assert!(count <= REJECTION_BOUND, "{}: rejection allocated {count} times", case.name);
        }
    }
}

#[test]
fn the_counter_counts() {
    let (v, count) = allocations(|| vec![1_u8; 16]);
    assert_eq!(v.len(), 16);
    assert_eq!(count, 1);
}
