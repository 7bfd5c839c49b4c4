//! Issue 18: TLS on the listener, with a certificate that is reloaded when its files change.

use portcullis_e2e::TestGateway;
use serde_json::json;

/// A self-signed certificate for the loopback names: its PEM and its key's PEM.
pub(crate) fn certificate() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

/// A gateway serving TLS with a fresh self-signed certificate (`cert.pem`, `key.pem` in the
/// returned folder, named after `tag`), and the certificate's PEM.
async fn tls_gateway(tag: &str) -> (TestGateway, String, std::path::PathBuf) {
    tls_gateway_with(tag, "", &crate::stdio_upstream("fixture")).await
}

/// [`tls_gateway`] with more `[server]` settings and the rest of its configuration.
pub(crate) async fn tls_gateway_with(
    tag: &str,
    server: &str,
    rest: &str,
) -> (TestGateway, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (cert, key) = certificate();
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let gateway = TestGateway::spawn(&format!(
        "[server]\ntls_cert = {cert_file:?}\ntls_key = {key_file:?}\n{server}\n\n{rest}"
    ))
    .await;
    (gateway, cert, dir)
}

/// A client that trusts `cert` alone.
pub(crate) fn trusting(cert: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// A 2026-07-28 `tools/list` to `url`.
pub(crate) async fn post_list(
    client: &reqwest::Client,
    url: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}}}})
            .to_string(),
        )
        .send()
        .await
}

async fn list(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    post_list(client, url)
        .await
        .map(|answer| answer.status().as_u16())
        .map_err(|error| format!("{error:?}"))
}

/// Replace `path` whole with `text`.
fn replace(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test]
async fn the_listener_serves_tls_and_takes_a_renewed_certificate_without_a_restart() {
    let (gateway, first, dir) = tls_gateway("tls").await;
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let url = gateway.url.replacen("http://", "https://", 1);
    assert_eq!(
        list(&trusting(&first), &url).await,
        Ok(200),
        "served over TLS"
    );
    let plain = list(&reqwest::Client::new(), &gateway.url).await;
    assert!(plain != Ok(200), "not in the clear: {plain:?}");

    // A renewed certificate: the key first, then the chain, as a renewal writes them.
    let (second, second_key) = certificate();
    replace(&key_file, &second_key);
    replace(&cert_file, &second);
    let renewed = trusting(&second);
    let mut served = Err(String::new());
    for _ in 0..40 {
        served = list(&renewed, &url).await;
        if served == Ok(200) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(served, Ok(200), "the renewed certificate is served");
    assert!(
        list(&trusting(&first), &url).await.is_err(),
        "and the old one no longer"
    );

    // A broken renewal keeps the certificate in force.
    replace(&cert_file, "not a certificate");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        list(&renewed, &url).await,
        Ok(200),
        "the one in force stays"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_when_loaded() {
    let dir = std::env::temp_dir().join(format!("tls-mismatch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, _) = certificate();
    let (_, other_key) = certificate();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), other_key).unwrap();
    let text = format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n\n{}\n[danger]\nunauthenticated = true\n",
        dir.join("cert.pem"),
        dir.join("key.pem"),
        crate::stdio_upstream("fixture")
    );
    let config =
        portcullis_gateway::config::Config::parse(&text, std::path::Path::new("<test>")).unwrap();
    let error = config
        .load_tls()
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("server.tls_cert"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
