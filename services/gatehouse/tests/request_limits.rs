//! Request limits of `gatehouse serve` as a client meets them, against the real binary: a client
//! that trickles its request head is disconnected (slowloris), an oversized head gets 431, an
//! oversized body 413, and requests beyond the concurrency limit are shed at once with 503
//! `overloaded` while the server keeps answering the rest.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_tests::TestEnv;
use serde_json::Value;

const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn gatehouse(env: &TestEnv) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.env("DATABASE_URL", &env.db_url)
        .env("GATEHOUSE_NATS_PREFIX", &env.prefix)
        .env("GATEHOUSE_NATS_STREAM", &env.stream)
        .env("GATEHOUSE_SECRET_KEY", SECRET_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// `gatehouse serve --roles api` on a free port; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the server with a 1 s head timeout and at most two requests at once.
    async fn start(env: &TestEnv) -> Server {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let child = gatehouse(env)
            .args(["serve", "--roles", "api"])
            .env("GATEHOUSE_LISTEN", addr.to_string())
            .env("GATEHOUSE_PUBLIC_URL", format!("http://{addr}"))
            .env("GATEHOUSE_HEADER_TIMEOUT", "1")
            .env("GATEHOUSE_MAX_CONCURRENT_REQUESTS", "2")
            .stdout(Stdio::null())
            .spawn()
            .expect("gatehouse serve starts");
        let server = Server { child, addr };
        common::await_success(&server.url("/healthz"), Duration::from_secs(60)).await;
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// An organisation and its owner's API key, through the CLI.
fn api_key(env: &TestEnv) -> String {
    let created = common::org_create(gatehouse(env), "owner@limits.example");
    created["api_key"].as_str().expect("an API key").to_owned()
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected_while_others_are_served() {
    let env = TestEnv::new().await;
    let server = Server::start(&env).await;

    let addr = server.addr;
    let slow = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("a connection");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gatehouse\r\nX-Slow: ")
            .expect("a partial head");
        // Never finishes the head. The server must close the connection; a read that waits
        // longer than this is a server that holds it open.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("a read timeout");
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        (read.map_err(|e| e.kind()), rest, started.elapsed())
    });
    // Meanwhile, a well-behaved client is served.
    let answer = reqwest::get(server.url("/healthz"))
        .await
        .expect("an answer");
    assert!(answer.status().is_success());

    let (read, rest, waited) = slow.await.expect("the slow client");
    assert!(
        read.is_ok() || read == Err(std::io::ErrorKind::ConnectionReset),
        "the server kept the connection open: {read:?} after {waited:?}"
    );
    // Whatever hyper says before closing (a 408, or nothing), it never answers the request.
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("200 OK"), "{text}");
}

#[tokio::test]
async fn an_oversized_head_gets_431_and_an_oversized_body_413() {
    let env = TestEnv::new().await;
    let key = api_key(&env);
    let server = Server::start(&env).await;
    let http = reqwest::Client::new();

    let answer = http
        .get(server.url("/healthz"))
        .header("x-padding", "a".repeat(100 * 1024))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 431);

    // A head just under the limit is fine.
    let answer = http
        .get(server.url("/healthz"))
        .header("x-padding", "a".repeat(16 * 1024))
        .send()
        .await
        .expect("an answer");
    assert!(answer.status().is_success());

    let before = env.db.head().await.expect("the head");
    let body = format!(
        r#"{{"required": true, "padding": "{}"}}"#,
        "a".repeat(2 << 20)
    );
    let answer = http
        .put(server.url(&format!("/api/v1/admins/{}/mfa", uuid::Uuid::now_v7())))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 413);
    let error: Value = answer.json().await.expect("a JSON error");
    assert_eq!(error["error"]["code"], "payload_too_large");
    assert_eq!(
        env.db.head().await.expect("the head"),
        before,
        "nothing appended"
    );
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed_with_503_and_the_rest_served() {
    let env = TestEnv::new().await;
    let key = api_key(&env);
    let server = Server::start(&env).await;
    let http = reqwest::Client::new();

    // Two reads that wait for a position nobody will reach occupy both slots until their
    // read-your-writes wait runs out (5 s, then their own 503). A probe racing them for a slot
    // can make one of them the shed request instead: then they end early, and we try again.
    let mut shed = None;
    for _attempt in 0..5 {
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let request = http
                    .get(server.url("/api/v1/admins"))
                    .header("x-api-key", &key)
                    .header("gatehouse-min-position", "999999999");
                tokio::spawn(async move { request.send().await.map(|a| a.status().as_u16()) })
            })
            .collect();
        while shed.is_none() && waiting.iter().all(|w| !w.is_finished()) {
            let answer = http
                .get(server.url("/healthz"))
                .send()
                .await
                .expect("an answer");
            if answer.status().as_u16() == 503 {
                shed = Some(answer);
            }
        }
        for request in waiting {
            let status = request.await.expect("the task").expect("an answer");
            assert_eq!(
                status, 503,
                "a waiting read ends with a 503, its own or the shedding's"
            );
        }
        if shed.is_some() {
            break;
        }
    }
    let shed = shed.expect("a request was shed while two slots were taken");
    assert!(shed.headers().contains_key("retry-after"));
    let error: Value = shed.json().await.expect("a JSON error");
    assert_eq!(error["error"]["code"], "overloaded");

    // Once they are done the server answers again.
    let answer = http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("an answer");
    assert!(answer.status().is_success());
}
