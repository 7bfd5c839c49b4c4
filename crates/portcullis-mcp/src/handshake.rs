//! Opening a connection: the transport, then the handshake of the era the upstream speaks.
//!
//! `auto` asks `server/discover` first (2026-07-28); an upstream that does not answer it with a
//! result naming that version (an error, an HTTP 4xx, a method it does not know) is asked
//! `initialize` (2025-11-25) on the same transport, or on a fresh child if the first one ended.

use std::time::Duration;

use portcullis_core::Era;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::{
    ClientIdentity, EraPreference, UpstreamError, UpstreamSpec, UpstreamTransport,
    connection::{Attribution, Connection, Event, Negotiated, Outbound, Wire},
    http::HttpClient,
};

/// The stateless era's version.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The session era's newest version, the one the gateway asks for.
pub const SESSION_VERSION: &str = "2025-11-25";
/// Session-era versions the gateway can speak to an upstream.
const SESSION_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
// Each step of a handshake has this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Open one connection to `spec` in `era` (the spec's own preference, unless a caller needs a
/// particular era), announcing `identity`. Returns the connection and what reaches it that
/// belongs to no request, which its owner reads (or drops, ignoring it).
pub async fn connect(
    spec: &UpstreamSpec,
    era: EraPreference,
    identity: ClientIdentity,
    attribution: Attribution,
    http: &HttpClient,
) -> Result<(Connection, mpsc::Receiver<Event>), UpstreamError> {
    let (connection, unattributed) = open(spec, identity.clone(), attribution, http)?;
    let negotiated = match era {
        EraPreference::Stateless => discover(&connection, &identity).await?,
        EraPreference::Sessions => initialize(&connection, &identity).await?,
        EraPreference::Auto => match discover(&connection, &identity).await {
            Ok(negotiated) => negotiated,
            Err(error) if connection.is_closed() => {
                // Some older children exit on a method they do not know: try a fresh one.
                tracing::debug!(upstream = %spec.name, %error, "discover ended the connection; trying initialize on a new one");
                let (connection, unattributed) = open(spec, identity.clone(), attribution, http)?;
                let negotiated = initialize(&connection, &identity).await?;
                connection.set_negotiated(negotiated);
                return Ok((connection, unattributed));
            }
            Err(error) => {
                tracing::debug!(upstream = %spec.name, %error, "no server/discover; trying initialize");
                initialize(&connection, &identity).await?
            }
        },
    };
    connection.set_negotiated(negotiated);
    Ok((connection, unattributed))
}

fn open(
    spec: &UpstreamSpec,
    identity: ClientIdentity,
    attribution: Attribution,
    http: &HttpClient,
) -> Result<(Connection, mpsc::Receiver<Event>), UpstreamError> {
    match &spec.transport {
        UpstreamTransport::Stdio {
            command,
            args,
            env,
            cwd,
        } => crate::stdio::spawn(
            &spec.name,
            (command, args, env, cwd.as_deref()),
            identity,
            attribution,
        ),
        UpstreamTransport::Http { url, credential } => crate::http::open(
            &spec.name,
            http.clone(),
            url,
            credential.clone(),
            identity,
            attribution,
        ),
    }
}

fn failed(connection: &Connection, reason: impl Into<String>) -> UpstreamError {
    UpstreamError::Handshake {
        upstream: connection.upstream().to_owned(),
        reason: reason.into(),
    }
}

async fn ask(
    connection: &Connection,
    method: &str,
    params: Map<String, Value>,
) -> Result<Map<String, Value>, UpstreamError> {
    let answer = async {
        let exchange = connection.send(Outbound::new(method, params)).await?;
        exchange.answer().await
    };
    let outcome = tokio::time::timeout(STEP_TIMEOUT, answer)
        .await
        .map_err(|_| failed(connection, format!("no answer to `{method}` in time")))??;
    match outcome.into_value() {
        Ok(Value::Object(result)) => Ok(result),
        Ok(_) => Err(failed(
            connection,
            format!("`{method}` answered with a non-object"),
        )),
        Err(error) => Err(failed(
            connection,
            format!("`{method}` refused: {} ({})", error.message, error.code),
        )),
    }
}

async fn discover(
    connection: &Connection,
    identity: &ClientIdentity,
) -> Result<Negotiated, UpstreamError> {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
        "io.modelcontextprotocol/clientCapabilities": identity.capabilities,
        "io.modelcontextprotocol/clientInfo": identity.info,
    });
    let mut params = Map::new();
    params.insert("_meta".to_owned(), meta);
    let result = ask(connection, "server/discover", params).await?;
    let supported = result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|versions| versions.iter().any(|v| v == STATELESS_VERSION));
    if !supported {
        return Err(failed(
            connection,
            "server/discover names no version the gateway speaks",
        ));
    }
    let server_info = result
        .get("_meta")
        .and_then(|meta| meta.get("io.modelcontextprotocol/serverInfo"))
        .or_else(|| result.get("serverInfo"))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(Negotiated {
        era: Era::Stateless,
        version: STATELESS_VERSION.to_owned(),
        capabilities: capabilities(&result),
        server_info,
        instructions: instructions(&result),
    })
}

async fn initialize(
    connection: &Connection,
    identity: &ClientIdentity,
) -> Result<Negotiated, UpstreamError> {
    let mut params = Map::new();
    params.insert("protocolVersion".to_owned(), SESSION_VERSION.into());
    params.insert(
        "capabilities".to_owned(),
        Value::Object(identity.capabilities.clone()),
    );
    params.insert("clientInfo".to_owned(), identity.info.clone());
    let result = ask(connection, "initialize", params).await?;
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .filter(|version| SESSION_VERSIONS.contains(version))
        .ok_or_else(|| {
            failed(
                connection,
                "initialize agreed on no version the gateway speaks",
            )
        })?
        .to_owned();
    if let Wire::Http(endpoint) = &connection.0.wire {
        endpoint.set_version(&version);
    }
    let negotiated = Negotiated {
        era: Era::Sessions,
        version,
        capabilities: capabilities(&result),
        server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
        instructions: instructions(&result),
    };
    tokio::time::timeout(
        STEP_TIMEOUT,
        connection.notify("notifications/initialized", Map::new()),
    )
    .await
    .map_err(|_| {
        failed(
            connection,
            "notifications/initialized was not taken in time",
        )
    })??;
    Ok(negotiated)
}

fn capabilities(result: &Map<String, Value>) -> Map<String, Value> {
    result
        .get("capabilities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn instructions(result: &Map<String, Value>) -> Option<String> {
    result
        .get("instructions")
        .and_then(Value::as_str)
        .map(str::to_owned)
}
