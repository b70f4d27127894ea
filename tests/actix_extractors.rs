//! actix behind `Verify`: every extractor of one handler gets the whole verified body
//! (actix gives all of a handler's extractors one payload, which the first to read used to
//! empty), in either order; a route whose `Verified` was put there by the application's
//! own middleware reads the payload once, within the default body limit; and the
//! extractors' `Debug` output quotes neither the body nor a value that did not fit.
#![cfg(feature = "actix")]

use actix_web::{App, HttpMessage as _, HttpResponse, test, web};
use hookguard::{
    actix::{VerifiedJson, VerifiedWebhook, Verify},
    guard::{DEFAULT_BODY_LIMIT, Guard},
    providers::github,
    verify::{Outgoing, Sign, Verified},
};

const SECRET: &str = "It's a Secret to Everybody";

fn run<F: std::future::Future>(f: F) -> F::Output {
    actix_web::rt::System::new().block_on(f)
}

#[derive(serde::Deserialize)]
struct Order {
    amount: u32,
}

fn signed(uri: &str, body: &str) -> actix_web::test::TestRequest {
    let scheme = github::scheme(SECRET).unwrap();
    let mut req = test::TestRequest::post().uri(uri);
    for (name, value) in scheme.sign(&Outgoing::new(body.as_bytes())).unwrap() {
        req = req.insert_header((name.as_str(), value.to_str().unwrap()));
    }
    req.set_payload(body.to_owned())
}

/// Both orders of `VerifiedWebhook` and `VerifiedJson` in one handler, and actix's own
/// `web::Bytes` after them: each gets the whole body. A failure would answer `422` (the
/// JSON extractor parsing zero bytes) or a short length, and `422` cancels the replay
/// reservation, so the sender's retries would fail the same way.
#[test]
fn every_extractor_of_one_handler_gets_the_whole_verified_body() {
    run(async {
        let guard = Guard::builder("github", github::scheme(SECRET).unwrap()).build();
        let app = test::init_service(
            App::new()
                .service(
                    web::resource("/webhook-first").wrap(Verify::new(guard.clone())).route(
                        web::post().to(
                            |hook: VerifiedWebhook,
                             VerifiedJson(order): VerifiedJson<Order>,
                             raw: web::Bytes| async move {
                                format!("{} {} {}", hook.body.len(), order.amount, raw.len())
                            },
                        ),
                    ),
                )
                .service(web::resource("/json-first").wrap(Verify::new(guard.clone())).route(web::post().to(
                    |VerifiedJson(order): VerifiedJson<Order>, hook: VerifiedWebhook| async move {
                        format!(
                            "{} {} {}",
                            hook.body.len(),
                            order.amount,
                            String::from_utf8_lossy(&hook.body)
                        )
                    },
                )))
                .service(web::resource("/json-twice").wrap(Verify::new(guard)).route(web::post().to(
                    |VerifiedJson(a): VerifiedJson<Order>,
                     VerifiedJson(b): VerifiedJson<serde_json::Value>| async move {
                        format!("{} {}", a.amount, b["amount"])
                    },
                ))),
        )
        .await;
        let cases = [
            ("webhook first", "/webhook-first", r#"{"amount":42}"#, "13 42 13"),
            ("json first", "/json-first", r#"{"amount":43}"#, r#"13 43 {"amount":43}"#),
            ("json twice", "/json-twice", r#"{"amount":44}"#, "44 44"),
        ];
        for (name, uri, body, want) in cases {
            let res = test::call_service(&app, signed(uri, body).to_request()).await;
            let status = res.status();
            let text = test::read_body(res).await;
            assert_eq!((status.as_u16(), String::from_utf8_lossy(&text).as_ref()), (200, want), "{name}");
        }
    });
}

/// A route whose `Verified` the application's own middleware put there (no `Verify`, so
/// no limit known): the extractors read the payload once, shared by all of them, within
/// `DEFAULT_BODY_LIMIT` rather than without a limit; over it, a `413` problem.
#[test]
fn without_verify_the_payload_is_read_once_within_the_default_limit() {
    run(async {
        let app = test::init_service(
            App::new().service(
                web::resource("/own")
                    .wrap_fn(|req, srv| {
                        req.extensions_mut().insert(Verified::new("own", None, None, None, [0; 32], 0));
                        actix_web::dev::Service::call(srv, req)
                    })
                    .route(web::post().to(
                        |VerifiedJson(v): VerifiedJson<serde_json::Value>, hook: VerifiedWebhook| async move {
                            HttpResponse::Ok().body(format!(
                                "{} {}",
                                v["pad"].as_str().map_or(0, str::len),
                                hook.body.len()
                            ))
                        },
                    )),
            ),
        )
        .await;
        let body = |pad: usize| format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad));
        let fits = body(DEFAULT_BODY_LIMIT - 10);
        assert_eq!(fits.len(), DEFAULT_BODY_LIMIT);
        let res =
            test::call_service(&app, test::TestRequest::post().uri("/own").set_payload(fits).to_request())
                .await;
        assert_eq!(res.status(), 200);
        let want = format!("{} {}", DEFAULT_BODY_LIMIT - 10, DEFAULT_BODY_LIMIT);
        assert_eq!(test::read_body(res).await, want.as_bytes());

        let over = body(DEFAULT_BODY_LIMIT - 9);
        let res =
            test::call_service(&app, test::TestRequest::post().uri("/own").set_payload(over).to_request())
                .await;
        assert_eq!(res.status(), 413);
        let text = test::read_body(res).await;
        assert!(String::from_utf8_lossy(&text).contains("body-too-large"), "{text:?}");
    });
}

/// `Debug` (which actix's `Logger` writes for error responses) says where and how a body
/// did not fit, and how long a body is, never the values in it.
#[test]
fn debug_output_quotes_neither_the_body_nor_the_value_that_did_not_fit() {
    run(async {
        let guard = Guard::builder("github", github::scheme(SECRET).unwrap()).build();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = seen.clone();
        let app =
            test::init_service(App::new().service(web::resource("/hook").wrap(Verify::new(guard)).route(
                web::post().to(move |hook: VerifiedWebhook, order: Result<VerifiedJson<Order>, _>| {
                    let seen = kept.clone();
                    async move {
                        let rejection: hookguard::actix::WebhookRejection = match order {
                            Ok(_) => return HttpResponse::Ok().finish(),
                            Err(rejection) => rejection,
                        };
                        *seen.lock().unwrap() = format!("{hook:?}\n{rejection:?}\n{hook:#?}\n{rejection:#?}");
                        HttpResponse::UnprocessableEntity().finish()
                    }
                }),
            )))
            .await;
        let body = r#"{"amount":"4111 1111 1111 1111"}"#;
        let res = test::call_service(&app, signed("/hook", body).to_request()).await;
        assert_eq!(res.status(), 422);
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.contains("4111") && !seen.contains("amount"), "{seen}");
        assert!(seen.contains(&format!("body_len: {}", body.len())), "{seen}");
        assert!(seen.contains("does not fit the expected type"), "{seen}");
    });
}
