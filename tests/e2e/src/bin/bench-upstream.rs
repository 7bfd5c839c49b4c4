//! A trivial MCP upstream for benchmarks: streamable HTTP on loopback, JSON answers only, both
//! eras, no sessions, one `echo` tool (plus `--tools N` fillers). It does as little as an MCP
//! server can, so that a benchmark's CPU time is the gateway's and not the upstream's.
//!
//! Usage: `bench-upstream [--tools N]`; prints `listening URL` once it serves.

#![expect(
    clippy::print_stdout,
    clippy::expect_used,
    reason = "a benchmark helper prints its address and stops on setup failure"
)]

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

fn main() {
    let mut tools = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--tools" {
            tools = args.next().and_then(|n| n.parse().ok()).expect("--tools N");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(serve(tools.max(1)));
}

async fn serve(tools: usize) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    println!("listening http://{address}/mcp");
    let listing = Arc::new(tool_list(tools));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let listing = listing.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, listing.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn tool_list(tools: usize) -> Value {
    let mut list = vec![json!({
        "name": "echo",
        "description": "Answers with the text it was given.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    })];
    for index in 1..tools {
        list.push(json!({
            "name": format!("tool_{index:04}"),
            "description": "A filler tool for list benchmarks.",
            "inputSchema": {"type": "object", "properties": {}},
        }));
    }
    Value::Array(list)
}

async fn answer(
    request: Request<Incoming>,
    listing: Arc<Value>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != hyper::Method::POST {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let Ok(body) = request.into_body().collect().await else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Some(id) = message.get("id").cloned() else {
        return Ok(status(StatusCode::ACCEPTED));
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let stateless = params["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28";
    let mut result = match message["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": params["protocolVersion"].as_str().unwrap_or("2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-upstream", "version": "0"},
        }),
        "server/discover" => json!({
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "bench-upstream", "version": "0"}},
            "ttlMs": 0,
            "cacheScope": "public",
        }),
        "ping" => json!({}),
        "tools/list" => {
            let mut result = json!({ "tools": listing.as_ref() });
            if stateless {
                result["ttlMs"] = json!(0);
                result["cacheScope"] = json!("public");
            }
            result
        }
        "tools/call" => json!({
            "content": [{"type": "text", "text": params["arguments"]["text"].as_str().unwrap_or_default()}],
            "isError": false,
        }),
        _ => {
            let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}});
            return Ok(json_response(&error));
        }
    };
    if stateless {
        result["resultType"] = json!("complete");
    }
    Ok(json_response(
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    ))
}

fn json_response(message: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_string())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}
