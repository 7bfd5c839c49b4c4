//! A pass-through in front of an upstream that writes down every request it carries (headers
//! and body), for tests that check what reached the upstream. The caller's `Authorization` is
//! recorded, not passed on (the fixtures behind it take none).

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::HeaderMap,
    response::Response,
};

/// Every request the proxy carried, in order: its headers and its body.
pub type Carried = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A proxy to `upstream` on loopback: its URL (`/mcp`), and what it carried.
pub async fn recording_proxy(upstream: String) -> (String, Carried) {
    let carried = Carried::default();
    let app = Router::new().fallback(forward).with_state((
        upstream,
        carried.clone(),
        reqwest::Client::new(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, carried)
}

async fn forward(
    State((upstream, carried, http)): State<(String, Carried, reqwest::Client)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .expect("a request body under 1 MiB");
    carried
        .lock()
        .expect("lock")
        .push((parts.headers.clone(), body.clone()));
    let mut outgoing = http.request(parts.method, &upstream).body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "authorization") {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = outgoing.send().await.expect("the upstream answers");
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        response = response.header(name.as_str(), value.as_bytes());
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .expect("a response")
}
