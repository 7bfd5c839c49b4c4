//! `[policy]` and `[[capability]]` resolved: the catalog, and the Cedar policies validated
//! against the schema generated from it. A start-up that cannot load them does not start.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use portcullis_authn::Scopes;
use portcullis_policy::{
    ArgumentType, Capability, CapabilityKind, Catalog, PolicyEngine, Resolver, RiskTier,
    ScopeHierarchy,
};

use super::{
    ConfigError,
    raw::{RawCapability, RawPolicy},
};

/// The policies in force and, if `[policy] shadow` names one, the candidate set beside them
/// (validated against the same catalog).
pub(super) fn resolve_policy(
    policy: Option<RawPolicy>,
    capabilities: Vec<RawCapability>,
    hierarchy: BTreeMap<String, Vec<String>>,
    base: &Path,
) -> Result<(Arc<PolicyEngine>, Option<Arc<PolicyEngine>>), ConfigError> {
    let catalog = resolve_catalog(capabilities, hierarchy)?;
    let shadow = match policy.as_ref().and_then(|policy| policy.shadow.as_ref()) {
        None => None,
        Some(file) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|error| {
                ConfigError::invalid("policy.shadow", format!("`{}`: {error}", path.display()))
            })?;
            let engine = PolicyEngine::new(catalog.clone(), &path.display().to_string(), &text)
                .map_err(|error| ConfigError::invalid("policy.shadow", error.to_string()))?;
            Some(Arc::new(engine))
        }
    };
    let (origin, text) = match policy {
        None => {
            return Err(ConfigError::invalid(
                "policy",
                "a `[policy]` section is required with `[auth]`: `file = \"policies.cedar\"`, \
                 or `cedar = \"permit (principal, action, resource);\"` to let every \
                 authenticated caller do everything",
            ));
        }
        Some(RawPolicy {
            file: Some(file),
            cedar: None,
            ..
        }) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|error| {
                ConfigError::invalid("policy.file", format!("`{}`: {error}", path.display()))
            })?;
            (path.display().to_string(), text)
        }
        Some(RawPolicy {
            file: None,
            cedar: Some(text),
            ..
        }) => ("policy.cedar".to_owned(), text),
        Some(_) => {
            return Err(ConfigError::invalid(
                "policy",
                "set exactly one of `file` and `cedar`",
            ));
        }
    };
    let engine = PolicyEngine::new(catalog, &origin, &text)
        .map_err(|error| ConfigError::invalid("policy", error.to_string()))?;
    Ok((Arc::new(engine), shadow))
}

fn resolve_catalog(
    raw: Vec<RawCapability>,
    hierarchy: BTreeMap<String, Vec<String>>,
) -> Result<Catalog, ConfigError> {
    for (scope, implied) in &hierarchy {
        let key = format!("auth.scope_hierarchy.{scope}");
        Scopes::new(std::iter::once(scope).chain(implied))
            .map_err(|error| ConfigError::invalid(key, error.to_string()))?;
    }
    let mut capabilities: Vec<Capability> = Vec::with_capacity(raw.len());
    for (index, capability) in raw.into_iter().enumerate() {
        let key = format!("capability[{index}]");
        let (kind, name) = match (
            capability.tool,
            capability.prompt,
            capability.resource,
            capability.method,
        ) {
            (Some(name), None, None, None) => (CapabilityKind::Tool, name),
            (None, Some(name), None, None) => (CapabilityKind::Prompt, name),
            (None, None, Some(uri), None) => (CapabilityKind::Resource, uri),
            (None, None, None, Some(method)) => (CapabilityKind::Method, method),
            _ => {
                return Err(ConfigError::invalid(
                    key,
                    "name exactly one of `tool`, `prompt`, `resource` or `method`",
                ));
            }
        };
        if kind == CapabilityKind::Method
            && matches!(
                name.as_str(),
                "tools/call"
                    | "prompts/get"
                    | "resources/read"
                    | "resources/subscribe"
                    | "resources/unsubscribe"
                    | "tools/list"
                    | "prompts/list"
                    | "resources/list"
                    | "resources/templates/list"
                    | "initialize"
                    | "ping"
                    | "server/discover"
            )
        {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "`{name}` is decided per tool, prompt or resource, or needs no decision: configure those instead"
                ),
            ));
        }
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                key,
                "the name is empty or has control characters",
            ));
        }
        let scopes = Scopes::new(capability.scopes)
            .map_err(|error| ConfigError::invalid(format!("{key}.scopes"), error.to_string()))?;
        if capabilities
            .iter()
            .any(|c| c.kind == kind && c.name == name)
        {
            return Err(ConfigError::invalid(
                key,
                format!("`{name}` is configured twice"),
            ));
        }
        let risk = match capability.risk.as_deref() {
            None => RiskTier::unconfigured_for(kind, &name),
            Some(text) => RiskTier::parse(text).ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.risk"),
                    format!("`{text}`: expected read, write, destructive, admin or spend"),
                )
            })?,
        };
        let mut arguments = Vec::new();
        for (argument, ty) in capability.arguments {
            let ty = ArgumentType::parse(&ty).ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.arguments.{argument}"),
                    format!("`{ty}`: expected string, long or bool"),
                )
            })?;
            arguments.push((argument, ty));
        }
        // A URI template names its segments; an object or tenant must be one of them, or an
        // argument of a tool or prompt.
        if kind == CapabilityKind::Resource {
            for (field, value) in [
                ("object", &capability.object),
                ("tenant", &capability.tenant),
            ] {
                if let Some(segment) = value
                    && !name.contains(&format!("{{{segment}}}"))
                {
                    return Err(ConfigError::invalid(
                        format!("{key}.{field}"),
                        format!("`{segment}` is not a segment of `{name}`"),
                    ));
                }
            }
        }
        let resolver = match capability.resolve {
            None => None,
            Some(resolve) => {
                if capability.object.is_none() || kind == CapabilityKind::Method {
                    return Err(ConfigError::invalid(
                        format!("{key}.resolve"),
                        "only a tool, prompt or resource that names its `object` can resolve it",
                    ));
                }
                let arguments = resolve
                    .arguments
                    .into_iter()
                    .map(|(name, value)| {
                        serde_json::to_value(value)
                            .map(|value| (name, value))
                            .map_err(|error| {
                                ConfigError::invalid(
                                    format!("{key}.resolve.arguments"),
                                    error.to_string(),
                                )
                            })
                    })
                    .collect::<Result<_, _>>()?;
                Some(Resolver {
                    tool: resolve.tool,
                    arguments,
                    not_found: resolve.not_found,
                })
            }
        };
        capabilities.push(Capability {
            kind,
            name,
            family: capability.family.unwrap_or_else(|| "default".to_owned()),
            scopes: scopes.iter().map(str::to_owned).collect(),
            risk,
            object: capability.object,
            tenant: capability.tenant,
            arguments,
            resolver,
            consent: capability.consent,
        });
    }
    Ok(Catalog::new(capabilities, ScopeHierarchy::new(hierarchy)))
}
