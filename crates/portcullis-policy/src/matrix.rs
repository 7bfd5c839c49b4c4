//! The authorization matrix (a row per capability: what it needs, which checks apply, which
//! policies can permit or forbid it) and the review of sample identities against every
//! capability, both from the live catalog and policies.

use std::collections::BTreeSet;

use cedar_policy::{ActionConstraint, Effect, EntityUid};
use serde_json::{Map, Value};

use crate::{Call, Capability, CapabilityKind, Decision, PolicyEngine, Principal, RiskTier};

/// When a call needs a person's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Never.
    No,
    /// Always, because of the capability's risk tier.
    RiskTier,
    /// When permitted by these policies (`@approval("required")`).
    Policies(Vec<String>),
}

/// One capability's row.
#[derive(Debug, Clone)]
pub struct MatrixRow {
    /// The capability.
    pub capability: Capability,
    /// Every scope a call needs.
    pub scopes: Vec<String>,
    /// The argument or URI segment the gateway pins to the caller's tenant, if any.
    pub tenant_check: Option<String>,
    /// The argument or URI segment naming the object policies see, if any.
    pub object_check: Option<String>,
    /// When approval is asked.
    pub approval: Approval,
    /// Permit policies whose scope covers this capability.
    pub permits: Vec<String>,
    /// Forbid policies whose scope covers this capability.
    pub forbids: Vec<String>,
}

/// One sample identity's decision on one sample call.
#[derive(Debug, Clone)]
pub struct ReviewRow {
    /// The identity's subject.
    pub subject: String,
    /// The capability.
    pub capability: String,
    /// What the sample call named (tenant and object), or `-`.
    pub target: String,
    /// Whether a list shows the capability to this identity.
    pub listed: bool,
    /// The decision.
    pub decision: Decision,
}

impl PolicyEngine {
    /// The matrix, one row per configured capability, in configuration order.
    pub fn matrix(&self) -> Vec<MatrixRow> {
        self.catalog()
            .capabilities()
            .iter()
            .map(|capability| {
                let action = self.action_uid(&capability.action());
                let (mut permits, mut forbids) = (Vec::new(), Vec::new());
                let mut approving = Vec::new();
                let mut never = false;
                for policy in self.policies().policies() {
                    let applies = match (policy.action_constraint(), &action) {
                        (ActionConstraint::Any, _) => true,
                        (ActionConstraint::Eq(uid), Some(action)) => &uid == action,
                        (ActionConstraint::In(groups), Some(action)) => {
                            groups.iter().any(|group| {
                                group == action || self.actions().is_ancestor_of(group, action)
                            })
                        }
                        (_, None) => false,
                    };
                    if !applies {
                        continue;
                    }
                    let id = policy.id().to_string();
                    match policy.effect() {
                        Effect::Permit => {
                            match policy.annotation("approval") {
                                Some("required" | "out_of_band") => approving.push(id.clone()),
                                Some("none") => never = true,
                                _ => {}
                            }
                            permits.push(id);
                        }
                        Effect::Forbid => forbids.push(id),
                    }
                }
                // The policy set is a map: sort for a stable, comparable table.
                permits.sort();
                forbids.sort();
                approving.sort();
                let approval = if !approving.is_empty() {
                    Approval::Policies(approving)
                } else if capability.risk >= RiskTier::Destructive && !never {
                    Approval::RiskTier
                } else {
                    Approval::No
                };
                MatrixRow {
                    scopes: capability.scopes.clone(),
                    tenant_check: capability.tenant.clone(),
                    object_check: capability.object.clone(),
                    approval,
                    permits,
                    forbids,
                    capability: capability.clone(),
                }
            })
            .collect()
    }

    /// Every identity through every configured capability: a call with no target, and for a
    /// capability that names a tenant, one call per tenant among the identities (so each
    /// identity is tried against its own tenant and every other).
    pub fn review(&self, identities: &[Principal]) -> Vec<ReviewRow> {
        let tenants: BTreeSet<&str> = identities
            .iter()
            .filter_map(|p| p.tenant.as_deref())
            .collect();
        let mut rows = Vec::new();
        for principal in identities {
            for capability in self.catalog().capabilities() {
                let listed = self.visible(principal, capability.kind, &capability.name);
                for (target, name, arguments) in samples(capability, &tenants) {
                    let call = Call {
                        kind: capability.kind,
                        name: &name,
                        arguments: Some(&arguments),
                        era: "2026-07-28",
                        object: None,
                        risk_hint: None,
                        credential: Default::default(),
                    };
                    rows.push(ReviewRow {
                        subject: principal.subject.clone(),
                        capability: capability.name.clone(),
                        target,
                        listed,
                        decision: self.authorize(principal, &call),
                    });
                }
            }
        }
        rows
    }

    fn action_uid(&self, action: &str) -> Option<EntityUid> {
        format!("Action::{}", crate::schema::quoted(action))
            .parse()
            .ok()
    }
}

/// The sample calls for one capability: `(label, name to call, arguments)`.
fn samples(
    capability: &Capability,
    tenants: &BTreeSet<&str>,
) -> Vec<(String, String, Map<String, Value>)> {
    let object = capability.object.as_deref();
    let Some(tenant_field) = capability.tenant.as_deref() else {
        return vec![("-".to_owned(), sample_name(capability, &[]), Map::new())];
    };
    tenants
        .iter()
        .map(|tenant| {
            let mut values = vec![(tenant_field, *tenant)];
            if let Some(object) = object {
                values.push((object, "sample"));
            }
            let arguments: Map<String, Value> = values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect();
            (
                format!("tenant {tenant}"),
                sample_name(capability, &values),
                arguments,
            )
        })
        .collect()
}

/// A resource template filled with sample values; other names as they are.
fn sample_name(capability: &Capability, values: &[(&str, &str)]) -> String {
    if capability.kind != CapabilityKind::Resource {
        return capability.name.clone();
    }
    let mut name = capability.name.clone();
    for (field, value) in values {
        name = name.replace(&format!("{{{field}}}"), value);
    }
    // Segments nobody named get a placeholder, so the URI still matches its template.
    while let (Some(open), Some(close)) = (name.find('{'), name.find('}')) {
        if close < open {
            break;
        }
        name.replace_range(open..=close, "sample");
    }
    name
}
