//! The MCP methods a client may send, of both eras, as one closed enum.
//!
//! Method names match exactly, as JSON-RPC says: `Tools/Call` is not `tools/call`, it is an
//! extension method like any other unknown name ([`McpMethod::Other`]), and is decided as one.

use std::fmt;

/// A request method a client sends to a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum McpMethod {
    /// `initialize` (2025-11-25 and before): opens a session.
    Initialize,
    /// `ping` (2025-11-25 and before).
    Ping,
    /// `server/discover` (2026-07-28).
    Discover,
    /// `tools/list`.
    ToolsList,
    /// `tools/call`.
    ToolsCall,
    /// `prompts/list`.
    PromptsList,
    /// `prompts/get`.
    PromptsGet,
    /// `resources/list`.
    ResourcesList,
    /// `resources/templates/list`.
    ResourceTemplatesList,
    /// `resources/read`.
    ResourcesRead,
    /// `resources/subscribe` (2025-11-25 and before).
    ResourcesSubscribe,
    /// `resources/unsubscribe` (2025-11-25 and before).
    ResourcesUnsubscribe,
    /// `subscriptions/listen` (2026-07-28).
    SubscriptionsListen,
    /// `completion/complete`.
    Complete,
    /// `logging/setLevel` (2025-11-25 and before).
    SetLogLevel,
    /// `tasks/get`.
    TasksGet,
    /// `tasks/result` (2025-11-25 tasks).
    TasksResult,
    /// `tasks/list` (2025-11-25 tasks).
    TasksList,
    /// `tasks/cancel`.
    TasksCancel,
    /// `tasks/update` (the 2026-07-28 tasks extension).
    TasksUpdate,
    /// Any other method: an extension, a typo, another casing. Decided like any other.
    Other(String),
}

/// Which member of `params` names what a request targets (SEP-2243's `Mcp-Name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetField {
    /// `params.name`: a tool or a prompt.
    Name,
    /// `params.uri`: a resource.
    Uri,
    /// `params.taskId`: a task.
    TaskId,
}

impl TargetField {
    /// The member's name in `params`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Uri => "uri",
            Self::TaskId => "taskId",
        }
    }
}

impl McpMethod {
    /// The method of `name`, exactly as written.
    pub fn parse(name: &str) -> Self {
        match name {
            "initialize" => Self::Initialize,
            "ping" => Self::Ping,
            "server/discover" => Self::Discover,
            "tools/list" => Self::ToolsList,
            "tools/call" => Self::ToolsCall,
            "prompts/list" => Self::PromptsList,
            "prompts/get" => Self::PromptsGet,
            "resources/list" => Self::ResourcesList,
            "resources/templates/list" => Self::ResourceTemplatesList,
            "resources/read" => Self::ResourcesRead,
            "resources/subscribe" => Self::ResourcesSubscribe,
            "resources/unsubscribe" => Self::ResourcesUnsubscribe,
            "subscriptions/listen" => Self::SubscriptionsListen,
            "completion/complete" => Self::Complete,
            "logging/setLevel" => Self::SetLogLevel,
            "tasks/get" => Self::TasksGet,
            "tasks/result" => Self::TasksResult,
            "tasks/list" => Self::TasksList,
            "tasks/cancel" => Self::TasksCancel,
            "tasks/update" => Self::TasksUpdate,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The method's name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Initialize => "initialize",
            Self::Ping => "ping",
            Self::Discover => "server/discover",
            Self::ToolsList => "tools/list",
            Self::ToolsCall => "tools/call",
            Self::PromptsList => "prompts/list",
            Self::PromptsGet => "prompts/get",
            Self::ResourcesList => "resources/list",
            Self::ResourceTemplatesList => "resources/templates/list",
            Self::ResourcesRead => "resources/read",
            Self::ResourcesSubscribe => "resources/subscribe",
            Self::ResourcesUnsubscribe => "resources/unsubscribe",
            Self::SubscriptionsListen => "subscriptions/listen",
            Self::Complete => "completion/complete",
            Self::SetLogLevel => "logging/setLevel",
            Self::TasksGet => "tasks/get",
            Self::TasksResult => "tasks/result",
            Self::TasksList => "tasks/list",
            Self::TasksCancel => "tasks/cancel",
            Self::TasksUpdate => "tasks/update",
            Self::Other(name) => name,
        }
    }

    /// The member of `params` that names this method's target, if it names one.
    pub fn target_field(&self) -> Option<TargetField> {
        match self {
            Self::ToolsCall | Self::PromptsGet => Some(TargetField::Name),
            Self::ResourcesRead | Self::ResourcesSubscribe | Self::ResourcesUnsubscribe => {
                Some(TargetField::Uri)
            }
            Self::TasksGet | Self::TasksResult | Self::TasksCancel | Self::TasksUpdate => {
                Some(TargetField::TaskId)
            }
            Self::Initialize
            | Self::Ping
            | Self::Discover
            | Self::ToolsList
            | Self::PromptsList
            | Self::ResourcesList
            | Self::ResourceTemplatesList
            | Self::SubscriptionsListen
            | Self::Complete
            | Self::SetLogLevel
            | Self::TasksList
            | Self::Other(_) => None,
        }
    }

    /// Whether this lists something (and is answered with a filtered page).
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            Self::ToolsList | Self::PromptsList | Self::ResourcesList | Self::ResourceTemplatesList
        )
    }

    /// Whether `era` has this method at all. A method the era removed (or has not got yet) is
    /// "Method not found" in that era, whatever any upstream would say.
    pub fn exists_in(&self, era: crate::Era) -> bool {
        match era {
            // Tasks v2 (SEP-2663) folds `tasks/result` into `tasks/get` and has no `tasks/list`.
            crate::Era::Stateless => !matches!(
                self,
                Self::Initialize
                    | Self::Ping
                    | Self::SetLogLevel
                    | Self::ResourcesSubscribe
                    | Self::ResourcesUnsubscribe
                    | Self::TasksResult
                    | Self::TasksList
            ),
            crate::Era::Sessions => !matches!(self, Self::Discover | Self::SubscriptionsListen),
        }
    }
}

impl fmt::Display for McpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification method a client sends to a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NotificationMethod {
    /// `notifications/initialized`.
    Initialized,
    /// `notifications/cancelled`.
    Cancelled,
    /// `notifications/progress`.
    Progress,
    /// `notifications/roots/list_changed`.
    RootsListChanged,
    /// Anything else.
    Other(String),
}

impl NotificationMethod {
    /// The notification of `name`, exactly as written.
    pub fn parse(name: &str) -> Self {
        match name {
            "notifications/initialized" => Self::Initialized,
            "notifications/cancelled" => Self::Cancelled,
            "notifications/progress" => Self::Progress,
            "notifications/roots/list_changed" => Self::RootsListChanged,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Initialized => "notifications/initialized",
            Self::Cancelled => "notifications/cancelled",
            Self::Progress => "notifications/progress",
            Self::RootsListChanged => "notifications/roots/list_changed",
            Self::Other(name) => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_method_round_trips_and_casing_is_another_method() {
        for name in [
            "initialize",
            "ping",
            "server/discover",
            "tools/list",
            "tools/call",
            "prompts/list",
            "prompts/get",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "subscriptions/listen",
            "completion/complete",
            "logging/setLevel",
            "tasks/get",
            "tasks/result",
            "tasks/list",
            "tasks/cancel",
            "tasks/update",
        ] {
            let method = McpMethod::parse(name);
            assert!(!matches!(method, McpMethod::Other(_)), "{name}");
            assert_eq!(method.as_str(), name);
        }
        assert_eq!(
            McpMethod::parse("Tools/Call"),
            McpMethod::Other("Tools/Call".to_owned())
        );
        assert_eq!(
            McpMethod::parse("tools/call "),
            McpMethod::Other("tools/call ".to_owned())
        );
    }
}
