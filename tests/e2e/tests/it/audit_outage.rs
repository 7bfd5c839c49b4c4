//! Audit sinks shared and lost: two gateways writing one PostgreSQL trail, and a sink that
//! stops taking writes (PostgreSQL gone, a full disk) refuses state-changing calls with a
//! malfunction while reads still answer and keep their records.

use std::sync::{Arc, Mutex};

use portcullis_audit::{Filter, Store, VerifyReport};
use portcullis_e2e::TestGateway;
use serde_json::json;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    audit::{call, config},
    authn::jwks,
};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

/// A fresh database on the test server (`.ci/run` starts one), or `None`, said out loud,
/// outside CI without one.
#[expect(
    clippy::disallowed_methods,
    reason = "the test server comes from the environment .ci/run sets"
)]
pub(crate) fn database(label: &str) -> Option<String> {
    let Ok(server) = std::env::var("PORTCULLIS_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PORTCULLIS_TEST_POSTGRES is not set: .ci/run starts PostgreSQL (tests/postgres/start.sh)"
        );
        eprintln!("SKIPPED: no PostgreSQL (eval \"$(tests/postgres/start.sh)\" to run this test)");
        return None;
    };
    let name = format!("gateway_{label}_{}", std::process::id());
    let created = name.clone();
    // The synchronous client runs a runtime of its own: keep it off the test's.
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&server, postgres::NoTls).unwrap();
        for statement in ["DROP DATABASE IF EXISTS", "CREATE DATABASE"] {
            client
                .batch_execute(&format!("{statement} {created}"))
                .unwrap();
        }
        let (base, _) = server.rsplit_once('/').unwrap();
        format!("{base}/{created}")
    })
    .join()
    .ok()
}

fn with_sink(config: String, sink: &str) -> String {
    let start = config.find("sqlite = ").unwrap();
    let end = start + config[start..].find('\n').unwrap();
    format!("{}{sink}{}", &config[..start], &config[end..])
}

fn token(issuer: &crate::authn::Issuer, roles: &[&str], scope: &str) -> String {
    issuer.token_with(json!({"sub": "user-42", "aud": RESOURCE, "tenant": "tenant-a", "roles": roles, "scope": scope}))
}

/// Poll `store` until it holds `want` records, then check its chain.
async fn settles_at(store: &Store, want: usize) -> VerifyReport {
    let mut have = 0;
    for _ in 0..200 {
        have = store.query(&Filter::default()).unwrap().len();
        if have >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(have, want, "records in {store}");
    store.verify().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_write_one_postgres_trail_that_verifies() {
    let Some(url) = database("shared") else {
        return;
    };
    let (issuer, jwks_uri) = jwks().await;
    let dir = std::env::temp_dir();
    let text = with_sink(config(&jwks_uri, &dir), &format!("postgres = {url:?}"));
    let first = TestGateway::spawn(&text).await;
    let second = TestGateway::spawn(&text).await;
    let wide = token(&issuer, &["editor"], "tools:read greet:write");
    let mut calls = Vec::new();
    for gateway in [&first, &second] {
        for i in 0..15 {
            let (url, wide) = (gateway.url.clone(), wide.clone());
            calls.push(tokio::spawn(async move {
                call(&url, Some(&wide), "greet", json!({"name": format!("n{i}")})).await
            }));
        }
    }
    for answer in calls {
        let (_, body) = answer.await.unwrap();
        assert!(body.contains("Hello, n"), "{body}");
    }
    // Thirty decisions (each durable before its call) and thirty outcomes, in one chain.
    let store = Store::Postgres(url);
    assert_eq!(
        settles_at(&store, 60).await,
        VerifyReport::Intact { records: 60 }
    );
    // The operator's view of the same trail, through the gateway's own configuration.
    let file = std::env::temp_dir().join(format!("pg-trail-{}.toml", std::process::id()));
    std::fs::write(&file, &text).unwrap();
    let portcullis = portcullis_e2e::workspace_bin("portcullis", "portcullis");
    let verify = std::process::Command::new(&portcullis)
        .args(["audit", "verify", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{said}");
    assert!(said.contains("intact, 60 records"), "{said}");
    let _ = std::fs::remove_file(&file);
}

/// A TCP relay to the database that the test can cut, as a stopped server would be.
struct Cable {
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    port: u16,
}

impl Cable {
    async fn lay(to: std::net::SocketAddr, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                spawned.lock().unwrap().push(relay);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { tasks, port }
    }

    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgres_refuses_state_changing_calls_and_keeps_reads_records() {
    let Some(url) = database("outage") else {
        return;
    };
    let (before, after) = url.split_once("@").unwrap();
    let (server, database) = after.split_once('/').unwrap();
    let server: std::net::SocketAddr = server.parse().unwrap();
    let cable = Cable::lay(server, 0).await;
    let relayed = format!("{before}@127.0.0.1:{}/{database}", cable.port);
    let (issuer, jwks_uri) = jwks().await;
    let text = with_sink(
        config(&jwks_uri, &std::env::temp_dir()),
        &format!("postgres = {relayed:?}"),
    );
    let gateway = TestGateway::spawn(&text).await;
    let wide = token(&issuer, &["editor", "viewer"], "tools:read greet:write");
    let greet = |name: &str| call(&gateway.url, Some(&wide), "greet", json!({"name": name}));
    assert!(greet("before").await.1.contains("Hello, before"));

    cable.cut();
    let (_, refused) = greet("during").await;
    assert!(
        refused.contains("-32603") && refused.contains("pc-") && !refused.contains("Hello"),
        "{refused}"
    );
    let echo = json!({"text": "still here"});
    let (_, read) = call(&gateway.url, Some(&wide), "fixture_echo", echo).await;
    assert!(read.contains("still here"), "{read}");

    // The server is back: the writer reconnects, the read's records arrive, the chain holds.
    let _cable = Cable::lay(server, cable.port).await;
    let mut answer = String::new();
    for _ in 0..100 {
        answer = greet("after").await.1;
        if answer.contains("Hello, after") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(answer.contains("Hello, after"), "{answer}");
    let store = Store::Postgres(url);
    let records = loop {
        let records = store.query(&Filter::default()).unwrap();
        if records.iter().filter(|(_, r)| r.outcome.is_some()).count() >= 3 {
            break records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let read_kept = records.iter().any(|(_, r)| {
        r.capability.as_deref() == Some("fixture_echo") && r.outcome.as_deref() == Some("ok")
    });
    assert!(read_kept, "the read's outcome survived the outage");
    let refused_greets = records
        .iter()
        .filter(|(_, r)| r.capability.as_deref() == Some("greet") && r.outcome.is_none())
        .count();
    // `before` and `after` were decided and ran; `during` is not claimed as run.
    assert!(refused_greets >= 2, "{records:?}");
    assert!(matches!(
        store.verify().unwrap(),
        VerifyReport::Intact { .. }
    ));
}

#[tokio::test]
async fn a_full_disk_refuses_state_changing_calls_and_answers_reads() {
    let (issuer, jwks_uri) = jwks().await;
    // Writes to /dev/full fail with ENOSPC, as a full disk's do.
    let text = with_sink(
        config(&jwks_uri, &std::env::temp_dir()),
        "jsonl = \"/dev/full\"",
    );
    let gateway = TestGateway::spawn(&text).await;
    let wide = token(&issuer, &["editor", "viewer"], "tools:read greet:write");
    let (_, refused) = call(&gateway.url, Some(&wide), "greet", json!({"name": "x"})).await;
    assert!(
        refused.contains("-32603") && refused.contains("pc-") && !refused.contains("Hello"),
        "{refused}"
    );
    let (_, read) = call(
        &gateway.url,
        Some(&wide),
        "fixture_echo",
        json!({"text": "ok"}),
    )
    .await;
    assert!(read.contains("\"ok\""), "{read}");
    let metrics = gateway.trail.render_metrics();
    assert!(
        metrics.contains("portcullis_audit_refused_calls_total 1")
            && metrics.contains("portcullis_audit_write_failures_total{sink=\"jsonl\"}"),
        "{metrics}"
    );
}

/// The test server's CA (`tests/postgres/start.sh` serves TLS with it), or `None` when the
/// server came from elsewhere.
#[expect(
    clippy::disallowed_methods,
    reason = "the test server's CA comes from the environment .ci/run sets"
)]
fn test_ca() -> Option<String> {
    let ca = std::env::var("PORTCULLIS_TEST_POSTGRES_CA").ok();
    if ca.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PORTCULLIS_TEST_POSTGRES_CA is not set: tests/postgres/start.sh sets it"
        );
        eprintln!("SKIPPED: the test PostgreSQL serves no TLS (tests/postgres/start.sh does)");
    }
    ca
}

// See: review of issue 16. Connections to PostgreSQL (the shared audit chain, and the shared
// approval state that decides whether a call was approved) had no TLS at all. With
// `sslmode=require` they use TLS, verified against the trust store (here the test server's
// CA, through SSL_CERT_FILE): a server whose certificate the trust store does not vouch for
// is refused, for the trail and for the approval state alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_is_used_and_verified() {
    let Some(url) = database("tls") else {
        return;
    };
    let Some(ca) = test_ca() else {
        return;
    };
    // The trail's table, made over the loopback's plain connection.
    let made = url.clone();
    std::thread::spawn(move || portcullis_audit::postgres(&made).map(|_| ()))
        .join()
        .unwrap()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("pg-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let secure = format!("{url}?sslmode=require");
    std::fs::write(
        dir.join("approval.keys"),
        "a-key-for-the-tls-test-0123456789abcdef\n",
    )
    .unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\npostgres = \"{secure}\"\n\n[cluster]\npostgres = \"{secure}\"\n\n\
             [consent]\nkeys = \"approval.keys\"\n\n{}\n[danger]\nunauthenticated = true\n",
            crate::stdio_upstream("fixture")
        ),
    )
    .unwrap();
    // Another CA: a trust store that does not vouch for the server.
    let other_ca = dir.join("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=another CA", "-keyout"])
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl makes another CA");
    let binary = portcullis_e2e::workspace_bin("portcullis", "portcullis");
    let verify = |trusted: bool| {
        let mut command = std::process::Command::new(&binary);
        command.args(["audit", "verify", "--config"]).arg(&config);
        command.env(
            "SSL_CERT_FILE",
            if trusted {
                ca.clone().into()
            } else {
                other_ca.clone()
            },
        );
        let output = command.output().unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, said) = verify(true);
    assert!(ok && said.contains("intact"), "over verified TLS: {said}");
    let (ok, said) = verify(false);
    assert!(
        !ok,
        "a server the trust store does not vouch for is refused: {said}"
    );

    // The approval state: a replica says on /readyz whether it reaches it (its trail here
    // is elsewhere: one it cannot open would stop it from starting at all).
    let config = dir.join("replica.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\npostgres = \"{secure}\"\n\n[consent]\nkeys = \"approval.keys\"\n\n\
             {}\n[danger]\nunauthenticated = true\n",
            crate::stdio_upstream("fixture")
        ),
    )
    .unwrap();
    let readyz = |trusted: bool| {
        let (config, binary, ca, missing) =
            (config.clone(), binary.clone(), ca.clone(), other_ca.clone());
        async move {
            let admin = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let mut child = tokio::process::Command::new(binary)
                .args(["serve", "--config"])
                .arg(&config)
                .args(["--listen", "127.0.0.1:0", "--admin", &admin.to_string()])
                .env("SSL_CERT_FILE", if trusted { ca.into() } else { missing })
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut text = String::new();
            for _ in 0..100 {
                if let Ok(answer) = reqwest::get(format!("http://{admin}/readyz")).await {
                    text = answer.text().await.unwrap_or_default();
                    if text.contains("ready") && !text.contains("upstream fixture") {
                        break;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let _ = child.kill().await;
            text
        }
    };
    let trusted = readyz(true).await;
    assert!(
        trusted.starts_with("ready\n"),
        "reaches the approval state over verified TLS: {trusted}"
    );
    let untrusted = readyz(false).await;
    assert!(
        untrusted.contains("approvals: the shared state cannot be reached"),
        "{untrusted}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
