//! What a policy set can read, taken from its parsed form: which of a principal's attributes,
//! whether the time, which policies look at the target, and which entities it names.
//!
//! SECURITY: caches key their entries by exactly these facts, so they must not depend on how a
//! policy is spelled. Cedar allows `User :: "x"`, `principal["tenant"]` and `\u{..}` escapes in
//! ids; text searches miss them, while Cedar's JSON form (EST) has one spelling for each.

use std::collections::HashSet;

use cedar_policy::PolicySet;
use serde_json::Value;

use crate::decision::Reads;

/// Everything the caches need to know about a policy set.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    pub(crate) reads: Reads,
    /// Whether any policy reads a capability's own name (`resource.capability`).
    pub(crate) names_read: bool,
    /// The ids of the policies that can depend on the target (its scope or its conditions
    /// look at `resource`).
    pub(crate) object_readers: HashSet<String>,
    /// The id of every entity any policy names, in its scope or its conditions.
    named: HashSet<String>,
    /// A policy could not be read: it may name anything.
    names_everything: bool,
}

impl Facts {
    /// The facts of `policies`. A policy Cedar cannot show as JSON counts as reading
    /// everything and naming every action.
    pub(crate) fn of(policies: &PolicySet) -> Self {
        let mut facts = Self::default();
        for policy in policies.policies() {
            let id = policy.id().to_string();
            match policy.to_json() {
                Ok(json) => facts.learn(&id, &json),
                Err(_) => facts.read_everything(&id),
            }
        }
        facts
    }

    /// Whether a policy names `action` or a target of it (`Target::"<action>#<object>"`).
    pub(crate) fn names(&self, action: &str) -> bool {
        self.names_everything
            || self.named.iter().any(|id| {
                id.strip_prefix(action)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('#'))
            })
    }

    fn read_everything(&mut self, id: &str) {
        self.reads = Reads {
            identity: true,
            tenant: true,
            scopes: true,
            time: true,
            connected: true,
        };
        self.names_read = true;
        self.object_readers.insert(id.to_owned());
        self.names_everything = true;
    }

    fn learn(&mut self, id: &str, policy: &Value) {
        collect_entities(policy, &mut self.named);
        if let Some(scope) = policy.get("principal") {
            match scope.get("op").and_then(Value::as_str) {
                Some("All") | None => {}
                Some("is") if scope.get("in").is_none() => {}
                // `principal in Role::"x"` reads the roles, which every key holds.
                Some("in") if entity_type(scope.get("entity")) == Some("Role") => {}
                Some(_) => self.reads.identity = true,
            }
        }
        if policy
            .get("resource")
            .and_then(|scope| scope.get("op"))
            .and_then(Value::as_str)
            .is_some_and(|op| op != "All")
        {
            self.object_readers.insert(id.to_owned());
        }
        let mut reader = Reader::default();
        if let Some(conditions) = policy.get("conditions").and_then(Value::as_array) {
            for condition in conditions {
                if let Some(body) = condition.get("body") {
                    reader.walk(body);
                }
            }
        }
        self.reads.identity |= reader.reads.identity;
        self.reads.tenant |= reader.reads.tenant;
        self.reads.scopes |= reader.reads.scopes;
        self.reads.time |= reader.reads.time;
        self.reads.connected |= reader.reads.connected;
        self.names_read |= reader.names_read;
        if reader.resource {
            self.object_readers.insert(id.to_owned());
        }
    }
}

/// What one policy's conditions read.
#[derive(Default)]
struct Reader {
    reads: Reads,
    names_read: bool,
    resource: bool,
}

impl Reader {
    fn walk(&mut self, expr: &Value) {
        match expr {
            Value::Object(node) => {
                for (op, inner) in node {
                    self.node(op, inner);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.walk(item)),
            _ => {}
        }
    }

    fn node(&mut self, op: &str, inner: &Value) {
        match op {
            "Var" => self.variable(inner.as_str(), None),
            "." | "has" => {
                let attr = inner.get("attr").and_then(Value::as_str);
                if attr == Some("capability") {
                    self.names_read = true;
                }
                match inner.get("left").and_then(|left| left.get("Var")) {
                    Some(var) => self.variable(var.as_str(), attr),
                    None => self.walk(inner),
                }
            }
            "in" if is_var(inner.get("left"), "principal")
                && entity_type(
                    inner
                        .get("right")
                        .and_then(|right| right.get("Value"))
                        .and_then(|value| value.get("__entity")),
                ) == Some("Role") => {}
            "Value" => {}
            _ => self.walk(inner),
        }
    }

    /// A use of variable `var`, through attribute `attr` when there is one.
    fn variable(&mut self, var: Option<&str>, attr: Option<&str>) {
        match (var, attr) {
            (Some("principal"), Some("tenant")) => self.reads.tenant = true,
            (Some("principal"), Some("scopes")) => self.reads.scopes = true,
            (Some("principal"), _) => self.reads.identity = true,
            // These are in every verdict key; anything else may be time.
            (Some("context"), Some("connected")) => self.reads.connected = true,
            (Some("context"), Some("era" | "arguments" | "credential")) => {}
            (Some("context"), _) => self.reads.time = true,
            (Some("resource"), _) => self.resource = true,
            _ => {}
        }
    }
}

fn is_var(expr: Option<&Value>, name: &str) -> bool {
    expr.and_then(|expr| expr.get("Var"))
        .and_then(Value::as_str)
        == Some(name)
}

fn entity_type(entity: Option<&Value>) -> Option<&str> {
    let entity = entity?;
    let entity = entity.get("__entity").unwrap_or(entity);
    let kind = entity.get("type")?.as_str()?;
    // A namespaced type still ends in its own name.
    Some(kind.rsplit("::").next().unwrap_or(kind))
}

/// Every entity id in `value`: scope entities (`{"type", "id"}`) and literals (`__entity`).
fn collect_entities(value: &Value, into: &mut HashSet<String>) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(_)), Some(Value::String(id))) =
                (map.get("type"), map.get("id"))
            {
                into.insert(id.clone());
            }
            map.values().for_each(|inner| collect_entities(inner, into));
        }
        Value::Array(items) => items.iter().for_each(|item| collect_entities(item, into)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(text: &str) -> Facts {
        let policies: PolicySet = text.parse().unwrap_or_else(|error| panic!("{error}"));
        Facts::of(&policies)
    }

    #[test]
    fn a_subject_named_in_any_spelling_is_read() {
        for text in [
            r#"forbid (principal == User::"user-43", action, resource);"#,
            r#"forbid (principal == User :: "user-43", action, resource);"#,
            r#"forbid (principal, action, resource) when { principal == User::"user-43" };"#,
            r#"forbid (principal, action, resource) when { principal["subject"] == "u" };"#,
            r#"forbid (principal, action, resource) when { principal has clientId };"#,
        ] {
            assert!(facts(text).reads.identity, "{text}");
        }
        let roles = facts(
            r#"permit (principal in Role::"viewer", action, resource) when { principal in Role::"x" };"#,
        );
        assert!(!roles.reads.identity);
    }

    #[test]
    fn tenant_scopes_time_and_the_target_are_read_in_any_spelling() {
        let f = facts(
            r#"permit (principal, action, resource) when { principal["tenant"] == "t" && principal.scopes.contains("s") };"#,
        );
        assert!(f.reads.tenant && f.reads.scopes && !f.reads.identity && !f.reads.time);
        assert!(f.object_readers.is_empty());
        let f = facts(
            r#"permit (principal, action, resource) when { context["time"] > 0 && resource has id };"#,
        );
        assert!(f.reads.time);
        assert_eq!(f.object_readers.len(), 1);
        let f = facts(r#"permit (principal, action, resource) when { context.era == "x" };"#);
        assert!(!f.reads.time);
    }

    #[test]
    fn an_action_named_through_an_escape_is_named() {
        let f =
            facts(r#"forbid (principal, action == Action::"tool\u{3a}delete_record", resource);"#);
        assert!(f.names("tool:delete_record"));
        assert!(!f.names("tool:delete"));
        let f = facts(
            r#"forbid (principal, action, resource) when { resource == Target::"tool:x#REC-1" };"#,
        );
        assert!(f.names("tool:x"));
        assert!(!f.names("tool:y"));
        let f = facts(
            r#"permit (principal, action, resource) when { resource["capability"] == "x" };"#,
        );
        assert!(f.names_read);
    }
}
