//! Issue 16: several replicas behave as one gateway. Three `portcullis serve` processes behind
//! HAProxy (Debian's package: round robin, sessions routed by the replica their id names,
//! `/readyz` as the health check), sharing PostgreSQL (approvals, page sign-ins, the audit
//! chain) and one policy and entitlements file, in front of one HTTP upstream.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use portcullis_e2e::{DevIssuer, Recorder, stateless_rpc};
use serde_json::{Value, json};

const REFRESH_MS: u64 = 200;
/// Callers losing the editor role, and callers keeping it: one of each per replica.
const LOSING: [&str; 3] = ["ann1", "ann2", "ann3"];
const KEEPING: [&str; 3] = ["bob1", "bob2", "bob3"];

/// The HAProxy binary, or `None` (said out loud) outside CI without one.
#[expect(
    clippy::disallowed_methods,
    reason = "whether this runs in CI, where a missing haproxy is a failure"
)]
pub(crate) fn haproxy() -> Option<PathBuf> {
    let found = [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no haproxy: .ci/run installs Debian's package"
        );
        eprintln!("SKIPPED: no haproxy (apt-get install haproxy to run this test)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn identities(editors: &[&str]) -> String {
    LOSING
        .iter()
        .chain(KEEPING.iter())
        .chain(["loader"].iter())
        .map(|subject| {
            let roles = if editors.contains(subject) {
                "[\"editor\"]"
            } else {
                "[]"
            };
            format!("[[identity]]\nsubject = \"{subject}\"\nroles = {roles}\n\n")
        })
        .collect()
}

/// Replace `file` whole, so that a reader never sees it half written.
fn replace(file: &Path, text: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, file).unwrap();
}

struct Replica {
    name: String,
    port: u16,
    admin: u16,
    child: Option<Child>,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn start(&mut self, config: &Path, log: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(portcullis_e2e::workspace_bin("portcullis", "portcullis"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--admin", &format!("127.0.0.1:{}", self.admin)])
            .env("PORTCULLIS_REPLICA", &self.name)
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("portcullis serve");
        self.child = Some(child);
    }

    async fn readyz(&self) -> Option<(u16, String)> {
        let answer = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.admin))
            .await
            .ok()?;
        Some((answer.status().as_u16(), answer.text().await.ok()?))
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let ready = self.readyz().await;
            if ready.as_ref().is_some_and(|(status, _)| *status == 200) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} not ready: {ready:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for the process to end.
    fn terminate(&mut self) -> Duration {
        let start = Instant::now();
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        start.elapsed()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Balancer(Child);

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn balancer(bin: &Path, dir: &Path, front: u16, replicas: &[Replica]) -> Balancer {
    let mut servers = String::new();
    for replica in replicas {
        // A session goes to the replica its id names; anything else round robin.
        servers.push_str(&format!(
            "  use-server {0} if {{ req.hdr(mcp-session-id) -m beg {0}. }}\n",
            replica.name
        ));
    }
    for replica in replicas {
        servers.push_str(&format!(
            "  server {} 127.0.0.1:{} check port {} inter 200ms fall 1 rise 2\n",
            replica.name, replica.port, replica.admin
        ));
    }
    let text = format!(
        "global\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 2s\n  \
         timeout client 60s\n  timeout server 60s\n  retries 3\n  option redispatch\n  \
         retry-on conn-failure\n\nfrontend mcp\n  bind 127.0.0.1:{front}\n  \
         default_backend gateways\n\nbackend gateways\n  balance roundrobin\n  \
         option httpchk GET /readyz\n  http-check expect status 200\n{servers}"
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, text).unwrap();
    let check = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy refuses its config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    Balancer(
        Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy"),
    )
}

/// Keep calling `echo` through `url` as `token` from `workers` rmcp clients (the official Rust
/// SDK, 2026-07-28: every call a request of its own, balanced round robin) until `stop`; the
/// calls that succeeded and those that failed (with the first failures, to show).
fn load(
    url: String,
    token: String,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, Vec<String>)> {
    tokio::spawn(async move {
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let client = portcullis_e2e::connect_as(
                &url,
                portcullis_e2e::Era::Stateless,
                portcullis_e2e::TestClient::default(),
                Some(&token),
            )
            .await;
            let (stop, ok, failed, failures) =
                (stop.clone(), ok.clone(), failed.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let answer = client
                        .call_tool(rmcp::model::CallToolRequestParams::new("echo"))
                        .await;
                    let text = format!("{answer:?}");
                    if answer.is_ok_and(|result| result.is_error != Some(true))
                        && text.contains("done")
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut failures = failures.lock().unwrap();
                        if failures.len() < 5 {
                            failures.push(text);
                        }
                    }
                }
                let _ = client.cancel().await;
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        let failures = failures.lock().unwrap().clone();
        (
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            failures,
        )
    })
}

/// A 2025-11-25 session through `url`, with its tools listed (its view shown) and its stream
/// open: its id, and a task gathering what the stream says until `until`, with when it first
/// said its tools changed.
async fn listening_session(
    url: &str,
    token: &str,
    until: tokio::time::Instant,
) -> (String, tokio::task::JoinHandle<(String, Option<Instant>)>) {
    let http = reqwest::Client::new();
    let session = crate::open_session(&http, url, Some(token)).await;
    let post = |body: Value| {
        http.post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string())
            .send()
    };
    let _ = post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    let listed = post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains("\"tools\""), "{listed}");
    let mut stream = http
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stream.status(),
        200,
        "the session's stream reaches its replica"
    );
    let heard = tokio::spawn(async move {
        let (mut seen, mut told) = (String::new(), None);
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until, stream.chunk()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if told.is_none() && seen.contains("notifications/tools/list_changed") {
                told = Some(Instant::now());
            }
        }
        (seen, told)
    });
    (session, heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_haproxy_behave_as_one_gateway() {
    let Some(haproxy) = haproxy() else {
        return;
    };
    let Some(database) = crate::audit_outage::database("replicas") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("replicas-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let front = free_port();
    let public = format!("http://127.0.0.1:{front}/mcp");
    let editors: Vec<&str> = LOSING.iter().chain(KEEPING.iter()).copied().collect();
    let issuer = DevIssuer::start_with(
        "replicas",
        &public,
        &[],
        Some(&identities(&[&editors[..], &["loader"]].concat())),
    )
    .await;
    let upstream = Recorder::start().await;
    let entitlements = dir.join("entitlements.toml");
    replace(
        &entitlements,
        &identities(&[&editors[..], &["loader"]].concat()),
    );
    std::fs::write(
        dir.join("approval.keys"),
        "a-key-shared-by-every-replica-of-this-test-0123456789\n",
    )
    .unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndrain_delay = \"1s\"\n\n\
             [auth]\npublic_url = \"{public}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
             [policy]\ncedar = '''\n\
             permit (principal in Role::\"editor\", action, resource);\n\
             permit (principal, action == Action::\"rpc:subscriptions/listen\", resource);\n'''\n\n\
             [[capability]]\ntool = \"echo\"\nrisk = \"write\"\n\n\
             [[capability]]\ntool = \"secret\"\nrisk = \"destructive\"\n\n\
             [[capability]]\ntool = \"wipe\"\nrisk = \"admin\"\n\n\
             [entitlements]\nfile = \"entitlements.toml\"\nrefresh = \"{REFRESH_MS}ms\"\n\n\
             [audit]\npostgres = \"{database}\"\n\n\
             [consent]\nkeys = \"approval.keys\"\n\n\
             [cluster]\npostgres = \"{database}\"\n\n\
             [limits]\nconcurrent_per_caller = 64\ncaller = {{ per_second = 100000, burst = 100000 }}\n\
             tenant = {{ per_second = 100000, burst = 100000 }}\n\n\
             [[upstream]]\nname = \"tickets\"\nurl = \"{}\"\n",
            issuer.issuer, upstream.url
        ),
    )
    .unwrap();
    let log = dir.join("replicas.log");
    let mut replicas: Vec<Replica> = (1..=3)
        .map(|n| Replica {
            name: format!("r{n}"),
            port: free_port(),
            admin: free_port(),
            child: None,
        })
        .collect();
    for replica in &mut replicas {
        replica.start(&config, &log);
    }
    for replica in &replicas {
        replica.wait_ready().await;
    }
    let _balancer = balancer(&haproxy, &dir, front, &replicas);
    let token = |subject: &str| issuer.auth.mint(subject, None).unwrap();
    let loader = token("loader");
    // HAProxy listens, and sees every replica up (two good checks) before anything is measured.
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", front))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "haproxy does not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let (status, _) =
            stateless_rpc(&public, Some(&loader), "tools/list", json!({}), json!({})).await;
        if status.is_success() || start.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Every replica is ready and enforces the same policy version.
    let mut versions = Vec::new();
    for replica in &replicas {
        let (status, text) = replica.readyz().await.unwrap();
        assert_eq!(status, 200, "{text}");
        versions.push(text.lines().skip(1).collect::<Vec<_>>().join("\n"));
        let alive = reqwest::get(format!("http://127.0.0.1:{}/healthz", replica.admin))
            .await
            .unwrap();
        assert_eq!(alive.status(), 200);
    }
    assert!(
        versions[0].starts_with("policy ") && versions[0].contains("\nentitlements "),
        "{versions:?}"
    );
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");

    // An approval asked through r1, answered on the page through r2 (its sign-in coming back
    // through the balancer, to any replica), runs its call once, through r3.
    let calls = |name: &str| {
        upstream
            .received()
            .iter()
            .filter(|message| message.method == "tools/call" && message.params["name"] == name)
            .count()
    };
    let ann = token("ann1");
    let wipe = |url: String| {
        let ann = ann.clone();
        async move {
            stateless_rpc(
                &url,
                Some(&ann),
                "tools/call",
                json!({"name": "wipe", "arguments": {"all": true}}),
                json!({}),
            )
            .await
            .1
        }
    };
    let asked = wipe(replicas[0].url()).await;
    let message: Value = serde_json::from_str(&asked).unwrap();
    let link = message["error"]["data"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("an approval link: {asked}"))
        .to_owned();
    let through_r2 = link.replace(
        &format!("127.0.0.1:{front}"),
        &format!("127.0.0.1:{}", replicas[1].port),
    );
    let page = crate::consent_page::approve_on_page(&through_r2, "ann1", true).await;
    assert!(page.contains("Approved"), "{page}");
    let ran = wipe(replicas[2].url()).await;
    assert!(
        ran.contains("done"),
        "approved through r2, it runs through r3: {ran}"
    );
    assert_eq!(calls("wipe"), 1);
    let again = wipe(replicas[0].url()).await;
    assert!(
        !again.contains("done") && again.contains("-31002"),
        "used once: asked anew: {again}"
    );
    assert_eq!(calls("wipe"), 1, "the approval ran its call once");

    // A question in the result (2026-07-28), sealed by r1, answered through r2, replayed
    // through r3: the shared key opens it anywhere, the shared state spends it once.
    let elicits = json!({"elicitation": {"form": {}}});
    let (_, asked) = stateless_rpc(
        &replicas[0].url(),
        Some(&ann),
        "tools/call",
        json!({"name": "secret", "arguments": {}}),
        elicits.clone(),
    )
    .await;
    let asked: Value = serde_json::from_str(&asked).unwrap();
    let state = asked["result"]["requestState"]
        .as_str()
        .unwrap_or_else(|| panic!("a sealed question: {asked}"))
        .to_owned();
    let answer = json!({
        "name": "secret", "arguments": {}, "requestState": state,
        "inputResponses": {"approval": {"action": "accept", "content": {"approve": true}}},
    });
    let (_, ran) = stateless_rpc(
        &replicas[1].url(),
        Some(&ann),
        "tools/call",
        answer.clone(),
        elicits.clone(),
    )
    .await;
    assert!(ran.contains("done"), "sealed by r1, redeemed by r2: {ran}");
    let (_, replayed) = stateless_rpc(
        &replicas[2].url(),
        Some(&ann),
        "tools/call",
        answer,
        elicits,
    )
    .await;
    assert!(
        !replayed.contains("done"),
        "replayed through r3: {replayed}"
    );
    assert_eq!(calls("secret"), 1);

    // A role removed: seen on every replica within the bound, and only the callers whose view
    // changed are told, on whichever replica holds their session.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut sessions = Vec::new();
    for subject in LOSING.iter().chain(KEEPING.iter()) {
        let (id, heard) = listening_session(&public, &token(subject), until).await;
        sessions.push((*subject, id, heard));
    }
    let holders: std::collections::BTreeSet<&str> = sessions
        .iter()
        .filter_map(|(_, id, _)| id.split('.').next())
        .collect();
    assert_eq!(
        holders.into_iter().collect::<Vec<_>>(),
        ["r1", "r2", "r3"],
        "sessions are spread over the replicas, each id naming its own: {:?}",
        sessions.iter().map(|(_, id, _)| id).collect::<Vec<_>>()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changed = Instant::now();
    replace(
        &entitlements,
        &identities(&[&KEEPING[..], &["loader"]].concat()),
    );
    let mut slowest = Duration::ZERO;
    for (subject, id, heard) in sessions {
        let (heard, told) = heard.await.unwrap();
        assert_eq!(
            told.is_some(),
            LOSING.contains(&subject),
            "{subject} (session {id}) heard: {heard}"
        );
        if let Some(at) = told {
            slowest = slowest.max(at.duration_since(changed));
        }
    }
    eprintln!("role removed: every affected session told within {slowest:?}");
    let mut after = Vec::new();
    for replica in &replicas {
        let (_, text) = replica.readyz().await.unwrap();
        after.push(text.lines().skip(1).collect::<Vec<_>>().join("\n"));
    }
    assert!(
        after.iter().all(|v| *v == after[0]) && after[0] != versions[0],
        "every replica enforces the new entitlements: {versions:?} -> {after:?}"
    );
    assert!(
        slowest < Duration::from_millis(REFRESH_MS * 5),
        "within the bound (the entitlements are read every {REFRESH_MS} ms): {slowest:?}"
    );
    for replica in &replicas {
        let (status, body) = stateless_rpc(
            &replica.url(),
            Some(&token("ann2")),
            "tools/call",
            json!({"name": "echo", "arguments": {}}),
            json!({}),
        )
        .await;
        assert!(
            !body.contains("done"),
            "{}: the removed role is enforced: {status} {body}",
            replica.name
        );
    }

    // One replica killed under load: the others answer; only calls in flight on it fail.
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(public.clone(), loader.clone(), 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replicas[1].kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, failures) = running.await.unwrap();
    eprintln!("SIGKILL under load: {ok} calls answered, {failed} failed");
    assert!(ok > 100, "the load ran: {ok}");
    assert!(
        failed <= 4,
        "only the calls in flight on the killed replica fail: {failed} {failures:?}"
    );
    replicas[1].start(&config, &log);
    replicas[1].wait_ready().await;

    // A rolling restart under load: SIGTERM one at a time; no call fails.
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(public.clone(), loader.clone(), 4, stop.clone());
    for replica in &mut replicas {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let took = replica.terminate();
        assert!(
            took >= Duration::from_millis(900),
            "{} drained before it closed: {took:?}",
            replica.name
        );
        replica.start(&config, &log);
        replica.wait_ready().await;
        // HAProxy takes it back after two good checks.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, failures) = running.await.unwrap();
    eprintln!("rolling restart under load: {ok} calls answered, {failed} failed");
    assert!(ok > 100, "the load ran: {ok}");
    assert_eq!(failed, 0, "no call failed: {failures:?}");

    // No acknowledged record is lost, and the shared chain is intact. Every answered `echo`
    // (state-changing: its record is committed before it goes upstream) has its record.
    let (ok_calls, trail) = (
        calls("echo"),
        portcullis_audit::Store::Postgres(database.clone()),
    );
    let records = tokio::task::spawn_blocking(move || {
        trail
            .query(&portcullis_audit::Filter::default())
            .unwrap()
            .into_iter()
            .filter(|(_, record)| {
                record.subject.as_deref() == Some("loader")
                    && record.decision == portcullis_audit::AuditDecision::Allow
                    && record.capability.as_deref() == Some("echo")
            })
            .count()
    })
    .await
    .unwrap();
    assert!(
        records >= ok_calls,
        "{records} allow records for {ok_calls} calls that reached the upstream"
    );
    let verify = Command::new(portcullis_e2e::workspace_bin("portcullis", "portcullis"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout).to_string();
    assert!(
        verify.status.success() && said.contains("intact"),
        "{said}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    drop(replicas);
    let _ = std::fs::remove_dir_all(&dir);
}
