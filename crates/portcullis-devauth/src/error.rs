//! Errors: the server's own (start-up, files), and OAuth error responses (RFC 6749 §5.2,
//! RFC 7591 §3.2.2, RFC 8707 §2).

use std::path::PathBuf;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// Why the authorization server cannot start or sign.
#[derive(Debug, thiserror::Error)]
pub enum DevAuthError {
    /// A file in the data dir is missing, unreadable or malformed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The issuer is not a loopback http(s) URL.
    #[error("the embedded authorization server serves loopback addresses only, not `{0}`")]
    NotLoopback(String),
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(String),
    /// A token cannot be minted as asked.
    #[error("{0}")]
    Mint(String),
}

impl DevAuthError {
    pub(crate) fn io(path: &std::path::Path, error: &std::io::Error) -> Self {
        Self::File {
            path: path.to_owned(),
            reason: error.to_string(),
        }
    }
}

/// An OAuth error answer: a code from the RFCs and a description for the developer.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub(crate) code: &'static str,
    pub(crate) description: String,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new("invalid_client", description)
    }
    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
    pub(crate) fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new("unauthorized_client", description)
    }
    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new("unsupported_grant_type", description)
    }
    pub(crate) fn unsupported_response_type(description: impl Into<String>) -> Self {
        Self::new("unsupported_response_type", description)
    }
    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new("invalid_scope", description)
    }
    pub(crate) fn invalid_target(description: impl Into<String>) -> Self {
        Self::new("invalid_target", description)
    }
    pub(crate) fn access_denied(description: impl Into<String>) -> Self {
        Self::new("access_denied", description)
    }
    pub(crate) fn temporarily_unavailable(description: impl Into<String>) -> Self {
        Self::new("temporarily_unavailable", description)
    }
    pub(crate) fn metadata(description: impl Into<String>) -> Self {
        Self::new("invalid_client_metadata", description)
    }
    pub(crate) fn redirect_uri(description: impl Into<String>) -> Self {
        Self::new("invalid_redirect_uri", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        // RFC 6749 §5.2: a failed client authentication is 401; everything else 400.
        let status = if self.code == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut response = (
            status,
            Json(json!({"error": self.code, "error_description": self.description})),
        )
            .into_response();
        no_store(&mut response);
        response
    }
}

/// RFC 6749 §5.1: token responses, and errors from the same endpoints, are never cached.
pub(crate) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
