use thiserror::Error;

/// Why an upstream could not be reached or used.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// The child process could not be started.
    #[error("upstream `{upstream}`: cannot start `{command}`")]
    Spawn {
        /// The upstream's configured name.
        upstream: String,
        /// The program that failed to start.
        command: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The MCP handshake (initialize or server/discover) failed.
    #[error("upstream `{upstream}`: handshake failed: {reason}")]
    Handshake {
        /// The upstream's configured name.
        upstream: String,
        /// What went wrong.
        reason: String,
    },
    /// The upstream is down and waiting for its next restart, or the connection ended.
    #[error("upstream `{upstream}` is unavailable")]
    Unavailable {
        /// The upstream's configured name.
        upstream: String,
    },
    /// No credential for the request at the upstream: the authorization server refused to
    /// issue one for this caller (`refused`), or could not be asked.
    #[error("upstream `{upstream}`: no credential: {reason}")]
    Credential {
        /// The upstream's configured name.
        upstream: String,
        /// Whether the authorization server said no (rather than could not be asked).
        refused: bool,
        /// What went wrong (never a token).
        reason: String,
    },
    /// The upstream answered 401 to a request that carried a caller's own credential (not the
    /// gateway's): it no longer takes that token (revoked or expired there).
    #[error("upstream `{upstream}` refused the caller's credential")]
    CredentialRejected {
        /// The upstream's configured name.
        upstream: String,
    },
    /// The caller has not connected its own account at an upstream that takes only each
    /// person's own token (or the connection ended): it must sign in there first.
    #[error("upstream `{upstream}`: the caller has not connected it")]
    NotConnected {
        /// The upstream's configured name.
        upstream: String,
    },
    /// A request could not be carried or answered (the transport failed, the upstream broke
    /// the protocol, a stream ended without an answer).
    #[error("upstream `{upstream}`: {reason}")]
    Transport {
        /// The upstream's configured name.
        upstream: String,
        /// What went wrong.
        reason: String,
    },
}
