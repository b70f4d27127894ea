//! Two replicas of one receiver (two axum servers with their own guards, connections and
//! worker pools, in this one test process) sharing a durable replay store and inbox: a
//! delivery replayed to the other replica is not processed again, and both replicas'
//! workers drain the one inbox, each job exactly once.
//!
//! Runs against the services named by `HOOKGUARD_TEST_REDIS_URL` and
//! `HOOKGUARD_TEST_POSTGRES_URL`; skipped only when they are unset.

use std::{
    collections::BTreeSet,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use hookguard::{
    guard::Guard,
    inbox::{Inbox, PostgresInbox, RedisInbox, Webhook},
    layer::WebhookService,
    providers::github,
    replay::RedisReplayStore,
    verify::{Outgoing, Sign},
    worker::Worker,
};

const SECRET: &str = "replica-secret";
const DELIVERIES: usize = 40;

fn unique(what: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("hg_test_{what}_{}_{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// One replica: what it was built from, as each process would build it.
struct Replica {
    url: String,
    processed: Arc<Mutex<Vec<String>>>,
    worker: Option<hookguard::worker::WorkerHandle>,
    inbox: Arc<dyn Inbox>,
}

async fn start(inbox: Arc<dyn Inbox>, replay: Option<RedisReplayStore>) -> Replica {
    let mut builder = Guard::builder("github", github::scheme(SECRET).unwrap()).inbox(Arc::clone(&inbox));
    builder = match replay {
        Some(store) => builder.replay_store(store),
        None => builder.no_replay_store(),
    };
    let app = axum::Router::new().route_service("/hooks/github", WebhookService::new(builder.build()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/github", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Replica { url, processed: Arc::default(), worker: None, inbox }
}

fn spawn_worker(replica: &mut Replica) {
    let processed = Arc::clone(&replica.processed);
    let handle = Worker::new(Arc::clone(&replica.inbox), move |hook: Webhook| {
        let processed = Arc::clone(&processed);
        async move {
            tokio::time::sleep(Duration::from_millis(15)).await;
            processed.lock().unwrap().push(hook.key().to_owned());
            Ok::<(), Infallible>(())
        }
    })
    .concurrency(2)
    .idle_poll(Duration::from_millis(10))
    .lease(Duration::from_secs(30))
    .spawn();
    replica.worker = Some(handle);
}

async fn send(client: &reqwest::Client, url: &str, id: &str) -> u16 {
    let scheme = github::scheme(SECRET).unwrap();
    let body = format!(r#"{{"delivery":"{id}"}}"#);
    let mut req = client.post(url).body(body.clone());
    for (name, value) in scheme.sign(&Outgoing::new(body.as_bytes()).id(id)).unwrap() {
        req = req.header(name.as_str(), value.as_bytes());
    }
    req.send().await.unwrap().status().as_u16()
}

/// Deliveries alternate between the replicas, each replayed to the other; then both
/// replicas' workers drain the shared inbox.
async fn scenario(mut a: Replica, mut b: Replica) {
    let client = reqwest::Client::new();
    let run = unique("d");
    let ids: Vec<String> = (0..DELIVERIES).map(|i| format!("{run}-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let (first, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(send(&client, &first.url, id).await, 202, "first delivery of {id} is accepted");
        assert_eq!(
            send(&client, &other.url, id).await,
            200,
            "{id} replayed to the other replica is a duplicate"
        );
    }
    spawn_worker(&mut a);
    spawn_worker(&mut b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = a.processed.lock().unwrap().len() + b.processed.lock().unwrap().len();
        if done >= DELIVERIES || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A replay after processing is still a duplicate, on either replica.
    assert_eq!(send(&client, &a.url, &ids[1]).await, 200);
    assert_eq!(send(&client, &b.url, &ids[0]).await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for replica in [&mut a, &mut b] {
        if let Some(worker) = replica.worker.take() {
            worker.shutdown(Duration::from_secs(5)).await;
        }
    }
    let from_a = a.processed.lock().unwrap().clone();
    let from_b = b.processed.lock().unwrap().clone();
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both replicas' workers drained: {} / {}",
        from_a.len(),
        from_b.len()
    );
    let union: BTreeSet<_> = from_a.iter().chain(&from_b).cloned().collect();
    let expected: BTreeSet<_> = ids.iter().map(|id| format!("github:{id}")).collect();
    assert_eq!(from_a.len() + from_b.len(), DELIVERIES, "each delivery processed exactly once");
    assert_eq!(union, expected);
    assert_eq!(a.inbox.depth().await.unwrap(), 0);
}

fn redis_url() -> Option<String> {
    std::env::var("HOOKGUARD_TEST_REDIS_URL").ok()
}

fn postgres_url() -> Option<String> {
    std::env::var("HOOKGUARD_TEST_POSTGRES_URL").ok()
}

async fn redis_replay(url: &str, prefix: &str) -> RedisReplayStore {
    RedisReplayStore::connect(url).await.expect("Redis must answer").prefix(format!("{prefix}:replay:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replay_store_and_redis_inbox() {
    let Some(url) = redis_url() else {
        eprintln!("skipped: HOOKGUARD_TEST_REDIS_URL unset");
        return;
    };
    let prefix = unique("replicas");
    let mut replicas = Vec::new();
    for name in ["replica-a", "replica-b"] {
        let inbox =
            RedisInbox::connect(&url).await.expect("Redis must answer").prefix(&prefix).consumer(name);
        replicas.push(start(Arc::new(inbox), Some(redis_replay(&url, &prefix).await)).await);
    }
    let b = replicas.pop().unwrap();
    scenario(replicas.pop().unwrap(), b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replay_store_and_postgres_inbox() {
    let (Some(redis), Some(pg)) = (redis_url(), postgres_url()) else {
        eprintln!("skipped: HOOKGUARD_TEST_REDIS_URL or HOOKGUARD_TEST_POSTGRES_URL unset");
        return;
    };
    let schema = unique("replicas");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let inbox = PostgresInbox::connect(&pg).await.expect("PostgreSQL must answer").schema(&schema);
        replicas.push(start(Arc::new(inbox), Some(redis_replay(&redis, &schema).await)).await);
    }
    let b = replicas.pop().unwrap();
    scenario(replicas.pop().unwrap(), b).await;
}

/// Without a replay store, the inbox's unique key is the dedup: a replay's push is a
/// duplicate, answered `200`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inbox_alone_deduplicates_by_its_unique_key() {
    let Some(pg) = postgres_url() else {
        eprintln!("skipped: HOOKGUARD_TEST_POSTGRES_URL unset");
        return;
    };
    let schema = unique("replicas");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let inbox = PostgresInbox::connect(&pg).await.expect("PostgreSQL must answer").schema(&schema);
        replicas.push(start(Arc::new(inbox), None).await);
    }
    let b = replicas.pop().unwrap();
    scenario(replicas.pop().unwrap(), b).await;
}
