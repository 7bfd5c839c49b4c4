//! Log notifications (`notifications/message`) gated by the level the client asked for.
#![expect(
    deprecated,
    reason = "MCP logging is SEP-2577-deprecated but still in the suite"
)]

use rmcp::{
    RoleServer,
    model::{LoggingLevel, LoggingMessageNotificationParam},
    service::RequestContext,
};
use serde_json::Value;

use crate::{era::Era, state::Session};

/// The logger name the fixture reports on every message.
const LOGGER: &str = "portcullis-fixture";

/// Sends log notifications for one request, at or above the level its client chose.
#[derive(Debug)]
pub(crate) struct RequestLog<'a> {
    context: &'a RequestContext<RoleServer>,
    threshold: Threshold,
}

#[derive(Debug, Clone, Copy)]
enum Threshold {
    /// Send nothing.
    Silent,
    /// Send messages at this level or above.
    AtLeast(LoggingLevel),
    /// Send everything: a session that never called `logging/setLevel`.
    Everything,
}

impl<'a> RequestLog<'a> {
    pub(crate) fn new(context: &'a RequestContext<RoleServer>, session: &Session) -> Self {
        let threshold = match Era::of(context) {
            // See: SEP-2575, a stateless request gets log messages only if its own `_meta` asks
            // for them with `io.modelcontextprotocol/logLevel`.
            Era::Stateless => context
                .meta
                .log_level()
                .map_or(Threshold::Silent, Threshold::AtLeast),
            Era::Session => session
                .log_level()
                .map_or(Threshold::Everything, Threshold::AtLeast),
        };
        Self { context, threshold }
    }

    /// Send `message` at `level` if the client wants it; a closed client is not an error.
    pub(crate) async fn send(&self, level: LoggingLevel, message: &str) {
        let wanted = match self.threshold {
            Threshold::Silent => false,
            Threshold::Everything => true,
            Threshold::AtLeast(minimum) => severity(level) >= severity(minimum),
        };
        if !wanted {
            return;
        }
        let param = LoggingMessageNotificationParam::new(level, Value::String(message.into()))
            .with_logger(LOGGER);
        if let Err(error) = self.context.peer.notify_logging_message(param).await {
            tracing::debug!(%error, "log notification not delivered");
        }
    }
}

/// RFC 5424 order, least severe first; `LoggingLevel` itself has no ordering.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_follows_rfc_5424_order() {
        let order = [
            LoggingLevel::Debug,
            LoggingLevel::Info,
            LoggingLevel::Notice,
            LoggingLevel::Warning,
            LoggingLevel::Error,
            LoggingLevel::Critical,
            LoggingLevel::Alert,
            LoggingLevel::Emergency,
        ];
        assert!(
            order
                .windows(2)
                .all(|pair| severity(pair[0]) < severity(pair[1]))
        );
    }
}
