//! The capability catalog: each capability the gateway exposes, what it needs, how risky it is,
//! and how its target object and tenant are named in a call.

use std::collections::HashMap;

use crate::ScopeHierarchy;

/// What kind of thing a capability is, as MCP names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapabilityKind {
    /// A tool, called with `tools/call`.
    Tool,
    /// A prompt, fetched with `prompts/get`.
    Prompt,
    /// A resource, read with `resources/read` or subscribed to, named by its URI (or a URI
    /// template, for a family of resources).
    Resource,
    /// Any other method a client can send: the protocol's utility methods (`completion/complete`,
    /// `logging/setLevel`, `tasks/*`, `subscriptions/listen`) and extension methods, named by
    /// the method itself. Policies see them as `Action::"rpc:<method>"` in `Action::"rpc"`.
    Method,
}

/// The protocol's utility methods: each has its own action (`rpc:<method>`) whether or not the
/// catalog names it, so policies can permit them one by one. Any other method is an extension:
/// `rpc:<method>` when the catalog names it, else `Action::"rpc"` itself.
pub const UTILITY_METHODS: [&str; 8] = [
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "tasks/update",
];

impl CapabilityKind {
    /// The kind of capability an MCP method acts on, if it acts on one by name.
    pub fn of_method(method: &str) -> Option<Self> {
        match method {
            "tools/call" => Some(Self::Tool),
            "prompts/get" => Some(Self::Prompt),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Some(Self::Resource)
            }
            _ => None,
        }
    }

    /// A small number per kind, for tables indexed by kind.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Tool => 0,
            Self::Prompt => 1,
            Self::Resource => 2,
            Self::Method => 3,
        }
    }

    /// The word policies use: `tool`, `prompt`, `resource`, `rpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Prompt => "prompt",
            Self::Resource => "resource",
            Self::Method => "rpc",
        }
    }
}

/// How much harm a call can do; higher tiers ask for approval by default (consent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RiskTier {
    /// Reads only.
    Read,
    /// Changes something, recoverably.
    Write,
    /// Deletes or overwrites irrecoverably.
    Destructive,
    /// Changes who may do what.
    Admin,
    /// Spends money.
    Spend,
}

impl RiskTier {
    /// Parse the configuration word.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "destructive" => Some(Self::Destructive),
            "admin" => Some(Self::Admin),
            "spend" => Some(Self::Spend),
            _ => None,
        }
    }

    /// The configuration word, also what policies see as `resource.risk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Destructive => "destructive",
            Self::Admin => "admin",
            Self::Spend => "spend",
        }
    }

    /// The tier of a capability nobody configured: tools and extension methods may change
    /// things; reading a resource or a prompt does not.
    pub fn unconfigured(kind: CapabilityKind) -> Self {
        match kind {
            CapabilityKind::Tool | CapabilityKind::Method => Self::Write,
            CapabilityKind::Prompt | CapabilityKind::Resource => Self::Read,
        }
    }

    /// The tier of a call to `name` of `kind` nobody configured: the protocol's utility methods
    /// only read or steer the caller's own requests.
    pub fn unconfigured_for(kind: CapabilityKind, name: &str) -> Self {
        if kind == CapabilityKind::Method && UTILITY_METHODS.contains(&name) {
            Self::Read
        } else {
            Self::unconfigured(kind)
        }
    }
}

/// The type of an argument a policy may look at (`context.arguments.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgumentType {
    /// A string.
    String,
    /// An integer.
    Long,
    /// A boolean.
    Bool,
}

impl ArgumentType {
    /// Parse the configuration word.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "string" => Some(Self::String),
            "long" => Some(Self::Long),
            "bool" => Some(Self::Bool),
            _ => None,
        }
    }

    pub(crate) fn cedar(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::Long => "Long",
            Self::Bool => "Bool",
        }
    }
}

/// How to learn a call's target object from the backend before deciding: call `tool` on the
/// capability's upstream with `arguments`, where the string `{object}` stands for the call's
/// object id. The answer's structured content is `{"exists": bool, "tenant"?, "owner"?,
/// "classification"?}`, as the backend sees it for this caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolver {
    /// The backend tool that describes objects.
    pub tool: String,
    /// Its arguments.
    pub arguments: serde_json::Map<String, serde_json::Value>,
    /// The text of the tool error the capability answers for an object that does not exist;
    /// an object the caller may not see gets exactly the same answer.
    pub not_found: String,
}

/// A target object's attributes, from the backend's source of truth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectAttributes {
    /// The tenant it belongs to.
    pub tenant: Option<String>,
    /// Who owns it.
    pub owner: Option<String>,
    /// Its classification (`internal`, `confidential`, ...).
    pub classification: Option<String>,
}

/// One capability as configured.
#[derive(Debug, Clone)]
pub struct Capability {
    /// Its kind.
    pub kind: CapabilityKind,
    /// Its name as clients see it; for a resource, its URI or a URI template such as
    /// `policy://{tenant}/{id}`.
    pub name: String,
    /// The family it belongs to (`policies`, `tickets`): an action group in policies.
    pub family: String,
    /// Every scope a call needs.
    pub scopes: Vec<String>,
    /// Its risk tier.
    pub risk: RiskTier,
    /// The argument (or URI template segment) naming the target object.
    pub object: Option<String>,
    /// The argument (or URI template segment) naming the tenant the target belongs to.
    pub tenant: Option<String>,
    /// Arguments policies may read, with their types.
    pub arguments: Vec<(String, ArgumentType)>,
    /// How its target object is resolved, if it is.
    pub resolver: Option<Resolver>,
    /// The approval request a person reads, with `{argument}` placeholders: "Send an email to
    /// {to} with the subject {subject}".
    pub consent: Option<String>,
}

impl Capability {
    /// The Cedar action id of a call to it: `tool:search_policies`.
    pub fn action(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }

    /// For a resource template, the segments of `uri` by name; `None` if it does not match.
    pub(crate) fn match_uri(&self, uri: &str) -> Option<Vec<(String, String)>> {
        match_template(&self.name, uri)
    }
}

/// Every configured capability, and the hierarchy their scopes are read through.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    capabilities: Vec<Capability>,
    /// Per kind (`CapabilityKind::index`), by name: looked up without building a key.
    by_name: [HashMap<String, usize>; 4],
    templates: Vec<usize>,
    hierarchy: ScopeHierarchy,
}

impl Catalog {
    /// A catalog of `capabilities` (configuration rejects duplicates before this; a later
    /// duplicate is ignored).
    pub fn new(
        capabilities: impl IntoIterator<Item = Capability>,
        hierarchy: ScopeHierarchy,
    ) -> Self {
        let mut catalog = Self {
            hierarchy,
            ..Self::default()
        };
        for capability in capabilities {
            let names = &mut catalog.by_name[capability.kind.index()];
            if names.contains_key(&capability.name) {
                continue;
            }
            let index = catalog.capabilities.len();
            if capability.kind == CapabilityKind::Resource && capability.name.contains('{') {
                catalog.templates.push(index);
            }
            catalog.by_name[capability.kind.index()].insert(capability.name.clone(), index);
            catalog.capabilities.push(capability);
        }
        catalog
    }

    /// Every capability, in configuration order.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// The scope hierarchy.
    pub fn hierarchy(&self) -> &ScopeHierarchy {
        &self.hierarchy
    }

    /// The capability a call to `name` (a resource's URI) is for, with the URI's template
    /// segments when a template matched.
    pub fn find(
        &self,
        kind: CapabilityKind,
        name: &str,
    ) -> Option<(&Capability, Vec<(String, String)>)> {
        if let Some(&index) = self.by_name[kind.index()].get(name) {
            return self.capabilities.get(index).map(|c| (c, Vec::new()));
        }
        if kind != CapabilityKind::Resource {
            return None;
        }
        self.templates.iter().find_map(|&index| {
            let capability = self.capabilities.get(index)?;
            capability
                .match_uri(name)
                .map(|segments| (capability, segments))
        })
    }

    /// The position of the capability named exactly `name` (no template matching).
    pub(crate) fn position(&self, kind: CapabilityKind, name: &str) -> Option<usize> {
        self.by_name[kind.index()].get(name).copied()
    }

    /// Whether any capability needs a scope.
    pub fn requires_scopes(&self) -> bool {
        self.capabilities.iter().any(|c| !c.scopes.is_empty())
    }

    /// The scopes a call to `name` needs that `granted` does not provide: when any is
    /// missing, **all** the scopes the call needs (one re-authorization is then enough, MCP's
    /// step-up), otherwise `None`.
    pub fn missing_scopes<'a>(
        &'a self,
        kind: CapabilityKind,
        name: &str,
        granted: &[String],
    ) -> Option<&'a [String]> {
        let (capability, _) = self.find(kind, name)?;
        self.missing_for(capability, granted)
    }

    pub(crate) fn missing_for<'a>(
        &self,
        capability: &'a Capability,
        granted: &[String],
    ) -> Option<&'a [String]> {
        let held = |needed: &String| {
            self.hierarchy
                .satisfies(granted.iter().map(String::as_str), needed)
        };
        (!capability.scopes.iter().all(held)).then_some(capability.scopes.as_slice())
    }
}

/// Match `uri` against a template whose `{name}` segments each stand for one non-empty run of
/// characters without `/`. Anything else must match exactly.
fn match_template(template: &str, uri: &str) -> Option<Vec<(String, String)>> {
    let mut segments = Vec::new();
    let mut rest = uri;
    let mut pattern = template;
    while let Some(open) = pattern.find('{') {
        let literal = &pattern[..open];
        rest = rest.strip_prefix(literal)?;
        let close = pattern[open..].find('}')? + open;
        let name = &pattern[open + 1..close];
        pattern = &pattern[close + 1..];
        let end = rest.find('/').unwrap_or(rest.len());
        let end = match pattern.chars().next() {
            Some(next) if next != '/' => rest[..end].find(next).unwrap_or(end),
            _ => end,
        };
        let value = &rest[..end];
        if value.is_empty() {
            return None;
        }
        segments.push((name.to_owned(), value.to_owned()));
        rest = &rest[end..];
    }
    (rest == pattern).then_some(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capability(kind: CapabilityKind, name: &str, scopes: &[&str]) -> Capability {
        Capability {
            kind,
            name: name.into(),
            family: "policies".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            risk: RiskTier::Read,
            object: None,
            tenant: None,
            arguments: Vec::new(),
            resolver: None,
            consent: None,
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(
            [
                capability(
                    CapabilityKind::Tool,
                    "update_policy",
                    &["policies:write", "audit:write"],
                ),
                capability(CapabilityKind::Tool, "search_policies", &["policies:read"]),
                capability(CapabilityKind::Resource, "policy://{tenant}/{id}", &[]),
            ],
            ScopeHierarchy::new([("policies:write".into(), vec!["policies:read".into()])]),
        )
    }

    #[test]
    fn a_missing_scope_names_every_scope_the_call_needs() {
        let c = catalog();
        let granted = vec!["policies:write".to_owned()];
        assert_eq!(
            c.missing_scopes(CapabilityKind::Tool, "update_policy", &granted),
            Some(&["policies:write".to_owned(), "audit:write".to_owned()][..])
        );
        assert_eq!(
            c.missing_scopes(CapabilityKind::Tool, "search_policies", &granted),
            None
        );
        assert_eq!(
            c.missing_scopes(CapabilityKind::Tool, "search_policies", &[])
                .map(<[_]>::len),
            Some(1)
        );
    }

    #[test]
    fn kinds_do_not_share_names() {
        let c = catalog();
        assert!(c.find(CapabilityKind::Prompt, "update_policy").is_none());
        assert!(c.find(CapabilityKind::Tool, "echo").is_none());
    }

    #[test]
    fn resource_templates_match_whole_segments_only() {
        let c = catalog();
        let (found, segments) = c
            .find(CapabilityKind::Resource, "policy://tenant-a/POL-1")
            .unwrap();
        assert_eq!(found.name, "policy://{tenant}/{id}");
        assert_eq!(
            segments,
            [
                ("tenant".into(), "tenant-a".into()),
                ("id".into(), "POL-1".into())
            ]
        );
        for miss in [
            "policy://tenant-a/POL-1/extra",
            "policy:///POL-1",
            "policy://tenant-a/",
            "hr-report://tenant-a/1",
        ] {
            assert!(c.find(CapabilityKind::Resource, miss).is_none(), "{miss}");
        }
    }
}
