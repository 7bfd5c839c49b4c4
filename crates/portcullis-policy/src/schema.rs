//! The Cedar schema, generated from the catalog: what policies may name, so that a typo in an
//! attribute or an action fails validation at start-up instead of silently never matching.
//!
//! - `User in [Role]`: the verified caller; roles are its parents.
//! - `Target`: what a call acts on: the capability's own attributes, plus the object and
//!   tenant the call names (optional: not every call names one; policies test with `has`).
//! - Actions: `tool:<name>`, `prompt:<name>`, `resource:<name or template>`, `rpc:<method>` per
//!   configured capability, each in its kind's group (`tool`, `prompt`, `resource`, `rpc`,
//!   which unconfigured capabilities use directly) and its family's group (`family:<family>`);
//!   the protocol's utility methods (`rpc:completion/complete`, `rpc:logging/setLevel`,
//!   `rpc:subscriptions/listen`, `rpc:tasks/*`) always, in `rpc`.

use std::{collections::BTreeSet, fmt::Write};

use crate::{CapabilityKind, Catalog};

pub(crate) const USER: &str = "User";
pub(crate) const ROLE: &str = "Role";
pub(crate) const TARGET: &str = "Target";

/// The schema text for `catalog`, in Cedar's schema syntax.
pub(crate) fn cedar_schema(catalog: &Catalog) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "entity {ROLE};\n\
         entity {USER} in [{ROLE}] = {{ \"subject\": String, \"issuer\": String, \"tenant\"?: String, \
         \"scopes\": Set<String>, \"clientId\"?: String }};\n\
         entity {TARGET} = {{ \"kind\": String, \"capability\": String, \"family\": String, \
         \"risk\": String, \"id\"?: String, \"tenant\"?: String, \"owner\"?: String, \
         \"classification\"?: String }};"
    );
    let families: BTreeSet<&str> = catalog
        .capabilities()
        .iter()
        .map(|c| c.family.as_str())
        .collect();
    for family in families {
        let _ = writeln!(text, "action {};", quoted(&format!("family:{family}")));
    }
    for kind in [
        CapabilityKind::Tool,
        CapabilityKind::Prompt,
        CapabilityKind::Resource,
        CapabilityKind::Method,
    ] {
        let _ = writeln!(
            text,
            "action {} appliesTo {{ principal: [{USER}], resource: [{TARGET}], context: {} }};",
            quoted(kind.as_str()),
            context(&[])
        );
    }
    for method in crate::UTILITY_METHODS {
        if catalog.find(CapabilityKind::Method, method).is_none() {
            let _ = writeln!(
                text,
                "action {} in [{}] appliesTo {{ principal: [{USER}], resource: [{TARGET}], context: {} }};",
                quoted(&format!("{}:{method}", CapabilityKind::Method.as_str())),
                quoted(CapabilityKind::Method.as_str()),
                context(&[])
            );
        }
    }
    for capability in catalog.capabilities() {
        let arguments: Vec<String> = capability
            .arguments
            .iter()
            .map(|(name, ty)| format!("{}?: {}", quoted(name), ty.cedar()))
            .collect();
        let _ = writeln!(
            text,
            "action {} in [{}, {}] appliesTo {{ principal: [{USER}], resource: [{TARGET}], context: {} }};",
            quoted(&capability.action()),
            quoted(capability.kind.as_str()),
            quoted(&format!("family:{}", capability.family)),
            context(&arguments),
        );
    }
    text
}

fn context(arguments: &[String]) -> String {
    format!(
        "{{ \"era\": String, \"credential\": String, \"connected\": Bool, \"time\": Long, \"arguments\": {{ {} }} }}",
        arguments.join(", ")
    )
}

/// A Cedar string literal (names come from configuration; escape what the grammar needs).
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
