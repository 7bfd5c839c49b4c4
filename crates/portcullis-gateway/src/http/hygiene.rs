//! Host and Origin allow-lists and the body size limit, before anything else reads the request.
//!
//! SECURITY: a browser page on another origin can reach a loopback server; checking Origin stops
//! it from driving the gateway (DNS rebinding, cross-site requests). Host is checked for the same
//! reason: a rebinding attack sends the attacker's host name.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{StatusCode, header};

use crate::{access::Reason, config::Config, trail::Trail};

pub(super) struct Policy {
    hosts: Vec<String>,
    origins: Vec<String>,
    max_body_bytes: usize,
    trail: Trail,
}

impl Policy {
    pub(super) fn from_config(config: &Config, trail: Trail) -> Self {
        Self {
            trail,
            hosts: config.allowed_hosts.clone(),
            origins: config
                .allowed_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            max_body_bytes: config.max_body_bytes,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let bare = strip_port(&host);
        self.hosts
            .iter()
            .any(|allowed| *allowed == host || *allowed == bare)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins
            .iter()
            .any(|allowed| match allowed.strip_suffix(":*") {
                Some(base) => {
                    origin == base
                        || origin
                            .strip_prefix(base)
                            .and_then(|rest| rest.strip_prefix(':'))
                            .is_some_and(|port| {
                                !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                            })
                }
                None => *allowed == origin,
            })
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|rest| rest.find(']')) {
        return &host[..end + 2];
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The one host a request names, or `None` when it names none or two. SECURITY: HTTP/2 names
/// it in `:authority` (the URI's authority here) and may add a `Host` header; HTTP/1.1 in
/// `Host`, and in the URI too when the request line is absolute. Were one of them checked and
/// another read later, a request could pass as one host and be served as another: so both
/// must agree (RFC 9113 §8.3.1), and there is exactly one `Host` at most.
fn host(request: &Request) -> Option<&str> {
    let mut headers = request.headers().get_all(header::HOST).iter();
    let header = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(one), None) => Some(one.to_str().ok()?),
        (Some(_), Some(_)) => return None,
    };
    let authority = request.uri().authority().map(http::uri::Authority::as_str);
    match (header, authority) {
        (Some(header), Some(authority)) => {
            header.eq_ignore_ascii_case(authority).then_some(authority)
        }
        (header, authority) => header.or(authority),
    }
}

pub(super) async fn check(
    State(policy): State<Arc<Policy>>,
    request: Request,
    next: Next,
) -> Response {
    let host = host(&request).map(str::to_owned);
    let source = request
        .extensions()
        .get::<super::Peer>()
        .map(|peer| peer.source);
    // The path only: a query string may hold what must never be recorded (a token).
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let line = move || {
        format!(
            "{method} {}",
            uri.path().chars().take(200).collect::<String>()
        )
    };
    if !host.is_some_and(|host| policy.host_allowed(&host)) {
        refused(
            &policy.trail,
            (&line(), source),
            403,
            Reason::HostNotAllowed,
        );
        return (StatusCode::FORBIDDEN, "Forbidden: Host not allowed\n").into_response();
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| policy.origin_allowed(origin));
        if !allowed {
            refused(
                &policy.trail,
                (&line(), source),
                403,
                Reason::OriginNotAllowed,
            );
            return (StatusCode::FORBIDDEN, "Forbidden: Origin not allowed\n").into_response();
        }
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > policy.max_body_bytes as u64) {
        refused(&policy.trail, (&line(), source), 413, Reason::BodyTooLarge);
        return (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n").into_response();
    }
    next.run(request).await
}

/// Every request refused here is recorded too, with what is known of it (nothing of who).
fn refused(
    trail: &Trail,
    (line, source): (&str, Option<std::net::IpAddr>),
    status: u16,
    reason: Reason,
) {
    let correlation = portcullis_core::CorrelationId::fresh();
    let mut record = crate::access::record::refused_early(
        correlation.as_str(),
        line,
        portcullis_audit::AuditDecision::Deny,
        status,
        reason,
        None,
    );
    record.source = source.map(|source| source.to_string());
    trail.refused_counted(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            hosts: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
            origins: vec![
                "http://localhost:*".into(),
                "https://app.example.com".into(),
            ],
            max_body_bytes: 10,
            trail: Trail::default(),
        }
    }

    #[test]
    fn loopback_hosts_with_any_port_pass() {
        let policy = policy();
        for host in ["localhost", "LOCALHOST:8080", "127.0.0.1:1", "[::1]:443"] {
            assert!(policy.host_allowed(host), "{host}");
        }
        for host in ["evil.example", "127.0.0.2", "localhost.evil.example:80"] {
            assert!(!policy.host_allowed(host), "{host}");
        }
    }

    // See: issue 18. HTTP/2 names the host in `:authority`; only `Host` was read, so a request
    // could pass the allow-list with one host and name another (and so could an absolute
    // HTTP/1.1 request line).
    #[test]
    fn the_host_is_the_one_both_places_name_or_none() {
        let request = |uri: &str, hosts: &[&str]| {
            let mut builder = http::Request::builder().uri(uri);
            for one in hosts {
                builder = builder.header(header::HOST, *one);
            }
            builder.body(axum::body::Body::empty()).unwrap()
        };
        for (uri, hosts, expected) in [
            ("/mcp", &["localhost:8080"][..], Some("localhost:8080")),
            (
                "https://localhost:8080/mcp",
                &[][..],
                Some("localhost:8080"),
            ),
            (
                "https://LOCALHOST:8080/mcp",
                &["localhost:8080"][..],
                Some("LOCALHOST:8080"),
            ),
            ("https://evil.example/mcp", &["localhost"][..], None),
            ("https://localhost/mcp", &["evil.example"][..], None),
            ("/mcp", &["localhost", "evil.example"][..], None),
            ("/mcp", &["localhost", "localhost"][..], None),
            ("/mcp", &[][..], None),
        ] {
            assert_eq!(host(&request(uri, hosts)), expected, "{uri} {hosts:?}");
        }
    }

    #[test]
    fn origins_match_exactly_or_by_port_wildcard() {
        let policy = policy();
        for origin in [
            "http://localhost:3000",
            "http://localhost",
            "https://app.example.com",
        ] {
            assert!(policy.origin_allowed(origin), "{origin}");
        }
        for origin in [
            "null",
            "http://localhost.evil:1",
            "http://localhost:",
            "https://localhost:1",
            "https://app.example.com:8443",
        ] {
            assert!(!policy.origin_allowed(origin), "{origin}");
        }
    }
}
