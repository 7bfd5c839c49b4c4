//! Review of issue 16: behind a load balancer every connection came from the balancer's
//! address, so the per-address limits put all clients in one bucket and records named the
//! balancer. From a source listed in `[server] proxy_protocol` each connection opens with a
//! PROXY header (HAProxy's `send-proxy` / `send-proxy-v2`), whose client address counts.

use portcullis_e2e::TestGateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUEST: &str = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                       accept: application/json, text/event-stream\r\ncontent-length: 2\r\n\
                       connection: close\r\n\r\n{}";

/// Send `header` then a tokenless request on a fresh connection to `address`: the answer's
/// first line, or nothing when the connection was closed.
async fn send(address: &str, header: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(header).await.unwrap();
    stream.write_all(REQUEST.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A v2 header for a TCP over IPv4 client `ip:port`.
fn v2(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&ip);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&80u16.to_be_bytes());
    header
}

/// A gateway with authentication on, taking PROXY headers from 127.0.0.1 and keeping a JSON
/// lines trail: it, its issuer, the trail, and the folder to remove.
async fn gateway(
    label: &str,
) -> (
    TestGateway,
    portcullis_e2e::DevIssuer,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = std::env::temp_dir().join(format!("proxy-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let trail = dir.join("audit.jsonl");
    let issuer = portcullis_e2e::DevIssuer::start(label, "http://127.0.0.1/mcp", &[]).await;
    let gateway = TestGateway::spawn(&format!(
        "[server]\nproxy_protocol = [\"127.0.0.1\"]\n\n[audit]\njsonl = {trail:?}\n\n\
         [auth]\npublic_url = \"http://127.0.0.1/mcp\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n{}",
        issuer.issuer,
        crate::stdio_upstream("fixture")
    ))
    .await;
    (gateway, issuer, trail, dir)
}

/// The source addresses the trail records, once it holds at least `want` of them (5 s).
async fn recorded_sources(
    gateway: &TestGateway,
    trail: &std::path::Path,
    want: usize,
) -> Vec<String> {
    gateway.trail.flush_floods(true);
    let mut sources = Vec::new();
    for _ in 0..50 {
        sources = portcullis_audit::Store::Lines(trail.to_path_buf())
            .query(&portcullis_audit::Filter::default())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, record)| record.source)
            .collect();
        if sources.len() >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sources
}

#[tokio::test]
async fn a_trusted_balancers_proxy_header_names_the_client() {
    let (gateway, _issuer, trail, dir) = gateway("headers").await;
    let address = gateway.base.trim_start_matches("http://").to_owned();
    let v1 = send(&address, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n").await;
    assert!(
        v1.starts_with("HTTP/1.1 "),
        "served after a v1 header: {v1:?}"
    );
    let v2 = send(&address, &v2([198, 51, 100, 9], 6000)).await;
    assert!(
        v2.starts_with("HTTP/1.1 "),
        "served after a v2 header: {v2:?}"
    );
    let bare = send(&address, b"").await;
    assert_eq!(
        bare, "",
        "from the balancer, a connection without a header is not served"
    );
    let crossed = send(&address, b"PROXY TCP4 ::1 127.0.0.1 5555 80\r\n").await;
    assert_eq!(crossed, "", "an address not of its protocol is no header");

    // Refusals before a decision are counted per window and source: the records name the
    // clients, not the balancer.
    let sources = recorded_sources(&gateway, &trail, 2).await;
    assert!(
        sources.iter().any(|s| s.starts_with("203.0.113.7"))
            && sources.iter().any(|s| s.starts_with("198.51.100.9")),
        "{sources:?}"
    );
    assert!(
        !sources.iter().any(|s| s.starts_with("127.0.0.1")),
        "{sources:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// The same through a real HAProxy (Debian's) with `send-proxy-v2`: a client on 127.0.0.2
// reaches the gateway through the balancer on 127.0.0.1, and the record names 127.0.0.2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_v2_names_the_client() {
    let Some(haproxy) = crate::replicas::haproxy() else {
        return;
    };
    let (gateway, _issuer, trail, dir) = gateway("haproxy").await;
    let backend = gateway.base.trim_start_matches("http://").to_owned();
    let front = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\n\
             frontend mcp\n  bind 127.0.0.1:{front}\n  default_backend gateway\n\n\
             backend gateway\n  server g {backend} send-proxy-v2 source 127.0.0.1\n"
        ),
    )
    .unwrap();
    let mut balancer = std::process::Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let mut status = 0;
    for _ in 0..50 {
        if let Ok(answer) = client
            .post(format!("http://127.0.0.1:{front}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body("{}")
            .send()
            .await
        {
            status = answer.status().as_u16();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = balancer.kill();
    let _ = balancer.wait();
    assert_eq!(status, 401, "through the balancer");
    let sources = recorded_sources(&gateway, &trail, 1).await;
    assert_eq!(sources, ["127.0.0.2"], "the client, not the balancer");
    let _ = std::fs::remove_dir_all(&dir);
}
