//! Which stateless requests may be relayed as bytes, and to where.
//!
//! A 2026-07-28 request to a 2026-07-28 upstream over HTTP needs no translation when the gateway
//! does not rename what it targets: the same bytes are valid upstream, and the upstream's answer
//! is valid for the caller. Such requests skip rmcp on both sides (see `http::relay`). Anything
//! else (sessions, bridging between eras, renamed names, several upstreams for one list) goes
//! through the typed proxy.

use portcullis_core::Era;
use portcullis_mcp::{UpstreamTransport, envelope::Envelope};
use url::Url;

use super::Gateway;

/// Where a relayable request goes.
pub struct RelayTarget {
    /// The upstream's MCP endpoint.
    pub url: Url,
    /// The pooled client for that upstream.
    pub http: reqwest::Client,
    /// The upstream's name, for logs.
    pub upstream: String,
    /// The gateway's own `Authorization` there, if configured.
    pub credential: Option<http::HeaderValue>,
    /// Its index among the gateway's upstreams.
    pub index: usize,
}

impl Gateway {
    /// The upstream that can take `envelope` as it is, if there is one.
    pub fn relay_target(&self, envelope: &Envelope<'_>) -> Option<RelayTarget> {
        let index = match envelope.method {
            "tools/call" | "prompts/get" => {
                let name = envelope.name.as_deref()?;
                let (index, upstream_name) = self.route_name(name)?;
                // A prefixed name must be rewritten for the upstream: not a byte relay.
                (upstream_name == name).then_some(index)?
            }
            "resources/read"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list" => {
                // One upstream owns everything, under its own names.
                (self.upstreams.len() == 1 && self.upstreams[0].prefix.is_none()).then_some(0)?
            }
            _ => return None,
        };
        let upstream = &self.upstreams[index];
        let UpstreamTransport::Http { url, credential } = &upstream.shared.spec().transport else {
            return None;
        };
        (upstream.shared.era()? == Era::Stateless).then(|| RelayTarget {
            url: url.clone(),
            http: upstream.shared.http().clone(),
            upstream: upstream.shared.spec().name.clone(),
            credential: credential.as_ref().and_then(|c| c.header_value()),
            index,
        })
    }
}
