//! The guard's body gate, driven through `WebhookService` in a current-thread runtime:
//! any declared `Content-Length`, a body in chunks of any size (repeated, so it can run
//! far past the limit), ending cleanly, with an error, or stalling. The answer is
//! exactly what the gate promises: 413 over the limit (declared or streamed), 400 on a
//! body error, 408 on a stall, else the verification's answer (202 when signed).
//!
//! Input: 8 control bytes, then the body.
#![no_main]

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hookguard::{
    guard::Guard,
    inbox::MemoryInbox,
    layer::WebhookService,
    providers::github,
    verify::{Outgoing, Sign},
};
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

fuzz_target!(|data: &[u8]| {
    let mut ctrl = [0_u8; 8];
    let n = data.len().min(8);
    ctrl[..n].copy_from_slice(&data[..n]);
    let piece = &data[n..];

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
    let mut req = http::Request::post("/hooks/github");
    let sign = ctrl[5] & 1 == 1;
    if sign {
        for (name, value) in scheme.sign(&Outgoing::new(&body)).expect("github signs") {
            req = req.header(name, value);
        }
        req = req.header("x-github-delivery", "d-1");
    }
    // Declared length: none, the true one, or any number.
    let declared: Option<String> = match ctrl[6] % 4 {
        0 => None,
        1 => Some(body.len().to_string()),
        2 => Some(u64::from(u16::from_le_bytes([ctrl[7], ctrl[1]])).to_string()),
        _ => Some(format!("{}", u64::MAX - u64::from(ctrl[7]))),
    };
    if let Some(d) = &declared {
        req = req.header(http::header::CONTENT_LENGTH, d.as_str());
    }
    let req = req.body(Chunks { chunks, end }).expect("request");

    // What the gate must answer.
    let declared_over = declared.and_then(|d| d.parse::<u64>().ok()).is_some_and(|d| d > limit as u64);
    let want: u16 = if declared_over || body.len() > limit {
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
        assert_eq!(status, want);
    }
    let body = res.into_body();
    let bytes = rt.block_on(http_body_util::BodyExt::collect(body)).expect("full body").to_bytes();
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
});
