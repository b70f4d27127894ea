//! The guard's body gate, driven through `WebhookService` in a current-thread runtime:
//! any declared `Content-Length` (a number, or any bytes), any number of extra headers
//! (up to past `MAX_HEADERS`, with values of any length, under any header limit), a body
//! in chunks of any size (repeated, so it can run far past the limit), ending cleanly,
//! with an error, or stalling. The answer is exactly what the gate promises: 431 when
//! there are more than `MAX_HEADERS` (4096) headers or their names and values take more
//! than the header limit; else 413 over the body limit (a declared `Content-Length` that
//! is a number, as `Guard::precheck` reads one, or the body streamed); 400 on a body
//! error, 408 on a stall, else the verification's answer (202 when signed).
//!
//! Input: 8 control bytes; when the sixth is 8 or more, 8 more for the extra headers; when
//! the sixth's low three bits are 4 or more, the `Content-Length` bytes (up to 31, the
//! seventh control byte says how many); then the body.
#![no_main]

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hookguard::{
    __fuzz,
    guard::{DEFAULT_HEADER_LIMIT, Guard},
    inbox::MemoryInbox,
    layer::WebhookService,
    providers::github,
    verify::{Outgoing, Sign},
};
use http::{HeaderName, HeaderValue};
use http_body::{Body, Frame};
use libfuzzer_sys::fuzz_target;
use tower_service::Service;

const SECRET: &str = "It's a Secret to Everybody";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Done,
    Error,
    Stall,
}

struct Chunks {
    chunks: VecDeque<Bytes>,
    end: End,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match this.end {
            End::Done => Poll::Ready(None),
            End::Error => Poll::Ready(Some(Err(std::io::Error::other("connection reset")))),
            // Never wakes: only the read timeout ends this.
            End::Stall => Poll::Pending,
        }
    }
}

/// A declared length as the guard reads one, written out apart from its code: a value of
/// visible ASCII or tabs only (`HeaderValue::to_str`), spaces and tabs around it trimmed,
/// an optional `+` and decimal digits (`u64::from_str`) whose number fits in `u64`.
fn declared_length(value: &[u8]) -> Option<u64> {
    if !value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return None;
    }
    let text = value.trim_ascii();
    let digits = text.strip_prefix(b"+").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0_u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fuzz_target!(|data: &[u8]| {
    let mut ctrl = [0_u8; 8];
    let n = data.len().min(8);
    ctrl[..n].copy_from_slice(&data[..n]);
    let mut piece = &data[n..];
    // Extra headers: how many, how long their values, one long value, the header limit.
    let more = if ctrl[6] >= 8 {
        let mut more = [0_u8; 8];
        let n = piece.len().min(8);
        more[..n].copy_from_slice(&piece[..n]);
        piece = &piece[n..];
        Some(more)
    } else {
        None
    };
    // Any bytes as the declared length.
    let any_length = if ctrl[6] & 7 >= 4 {
        let n = piece.len().min(usize::from(ctrl[7] % 32));
        let bytes = &piece[..n];
        piece = &piece[n..];
        Some(bytes)
    } else {
        None
    };

    let limit = usize::from(u16::from_le_bytes([ctrl[0], ctrl[1]]) % 8192);
    let end = match ctrl[2] % 4 {
        0 | 1 => End::Done,
        2 => End::Error,
        _ => End::Stall,
    };
    let chunk_size = 1 + usize::from(ctrl[3]);
    let repeat = 1 + usize::from(ctrl[4] % 32);
    let body: Vec<u8> = piece.repeat(repeat);
    let chunks: VecDeque<Bytes> = body.chunks(chunk_size).map(Bytes::copy_from_slice).collect();

    let scheme = github::scheme(SECRET).expect("github scheme");
    // Every header the request has, in order.
    let mut head: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let sign = ctrl[5] & 1 == 1;
    if sign {
        head.extend(scheme.sign(&Outgoing::new(&body)).expect("github signs"));
        head.push((HeaderName::from_static("x-github-delivery"), HeaderValue::from_static("d-1")));
    }
    // Declared length: none, the true one, any number, or any bytes (left out when they
    // are no header value at all).
    let declared: Option<Vec<u8>> = match (ctrl[6] & 7, any_length) {
        (0, _) => None,
        (1, _) => Some(body.len().to_string().into_bytes()),
        (2, _) => Some(u64::from(u16::from_le_bytes([ctrl[7], ctrl[1]])).to_string().into_bytes()),
        (3, _) => Some(format!("{}", u64::MAX - u64::from(ctrl[7])).into_bytes()),
        (_, bytes) => bytes.filter(|b| HeaderValue::from_bytes(b).is_ok()).map(<[u8]>::to_vec),
    };
    if let Some(d) = &declared {
        head.push((http::header::CONTENT_LENGTH, HeaderValue::from_bytes(d).expect("a header value")));
    }
    let mut header_limit = DEFAULT_HEADER_LIMIT;
    if let Some(more) = more {
        // Rarely (4096 headers cost time) about as many as the limit, else a few.
        let count = if more[0] == 0xff {
            __fuzz::MAX_HEADERS - 8 + usize::from(more[1] % 16)
        } else {
            usize::from(more[1] % 32)
        };
        let value = HeaderValue::from_bytes(&vec![b'v'; usize::from(more[2] % 128)]).expect("a header value");
        for i in 0..count {
            let name = if more[7] & 2 == 2 && i % 2 == 1 { "x-pad-with-a-longer-name" } else { "x-pad" };
            head.push((HeaderName::from_static(name), value.clone()));
        }
        let long = usize::from(u16::from_le_bytes([more[3], more[4]]));
        if long > 0 {
            head.push((
                HeaderName::from_static("x-long"),
                HeaderValue::from_bytes(&vec![b'l'; long]).expect("a header value"),
            ));
        }
        if more[7] & 1 == 0 {
            header_limit = usize::from(u16::from_le_bytes([more[5], more[6]]));
        }
    }
    let mut req = http::Request::post("/hooks/github");
    for (name, value) in &head {
        req = req.header(name, value);
    }
    let req = req.body(Chunks { chunks, end }).expect("request");

    // What the gate must answer.
    let head_size: usize = head.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    let head_over = head.len() > __fuzz::MAX_HEADERS || head_size > header_limit;
    let declared_over = declared.as_deref().and_then(declared_length).is_some_and(|d| d > limit as u64);
    let want: u16 = if head_over {
        431
    } else if declared_over || body.len() > limit {
        413
    } else {
        match end {
            End::Error => 400,
            End::Stall => 408,
            End::Done if sign => 202,
            End::Done => 0, // a rejection: some 4xx
        }
    };

    let guard = Guard::builder("fuzz", scheme)
        .inbox(MemoryInbox::new())
        .body_limit(limit)
        .header_limit(header_limit)
        .read_timeout(Duration::from_secs(1))
        .build();
    let mut service = WebhookService::new(guard);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let res = rt.block_on(service.call(req)).expect("infallible");
    let status = res.status().as_u16();
    if want == 0 {
        assert!(matches!(status, 400 | 401), "status {status}");
    } else {
        assert_eq!(
            status,
            want,
            "{} headers of {head_size} bytes (limit {header_limit}), declared {:?}",
            head.len(),
            declared.as_deref().map(String::from_utf8_lossy)
        );
    }
    let body = res.into_body();
    let bytes = rt.block_on(http_body_util::BodyExt::collect(body)).expect("full body").to_bytes();
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
});
