//! Building the Cedar entities of one request: the caller with its roles, the target with the
//! capability's attributes and the object's, the action, the declared arguments.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};

use crate::{
    Capability, CapabilityKind, ObjectAttributes, Principal, RiskTier,
    schema::{ROLE, TARGET, USER},
};

/// What a call targets, as far as it is known.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) object: Option<&'a str>,
    pub(crate) tenant: Option<&'a str>,
    pub(crate) resolved: Option<&'a ObjectAttributes>,
}

/// An attribute of the target: given by the call, unknown (listing), or not there at all.
#[derive(Clone, Copy)]
pub(crate) enum Attribute<'a> {
    Known(&'a str),
    Unknown,
    Absent,
}

/// The `Target` entity of a call: the capability's own attributes, always known, and the
/// object's (owner and classification as its backend reported them). While listing, an object the capability names has unknown `id`, `owner` and
/// `classification` (its resolver would supply the last two on a call).
pub(crate) fn target_entity(
    kind: CapabilityKind,
    name: &str,
    capability: Option<&Capability>,
    object: Attribute<'_>,
    tenant: Attribute<'_>,
    resolved: Option<&ObjectAttributes>,
    risk: RiskTier,
) -> Result<(EntityUid, Entity), ()> {
    let action = action_id(kind, name, capability);
    let id = match object {
        Attribute::Known(id) => id,
        Attribute::Unknown => "?",
        Attribute::Absent => "",
    };
    let target_uid = uid(TARGET, &format!("{action}#{id}"))?;
    let mut attributes = HashMap::from([
        ("kind".to_owned(), string(kind.as_str())),
        ("capability".to_owned(), string(name)),
        (
            "family".to_owned(),
            string(capability.map_or("unconfigured", |c| c.family.as_str())),
        ),
        ("risk".to_owned(), string(risk.as_str())),
    ]);
    for (attribute, value) in [("id", object), ("tenant", tenant)] {
        match value {
            Attribute::Known(text) => {
                attributes.insert(attribute.to_owned(), string(text));
            }
            Attribute::Unknown => {
                attributes.insert(
                    attribute.to_owned(),
                    RestrictedExpression::new_unknown(attribute),
                );
            }
            Attribute::Absent => {}
        }
    }
    if let Some(resolved) = resolved {
        let reported = [
            ("owner", &resolved.owner),
            ("classification", &resolved.classification),
        ];
        for (attribute, value) in reported {
            if let Some(value) = value {
                attributes.insert(attribute.to_owned(), string(value));
            }
        }
    }
    if matches!(object, Attribute::Unknown) {
        for attribute in ["owner", "classification"] {
            attributes.insert(
                attribute.to_owned(),
                RestrictedExpression::new_unknown(attribute),
            );
        }
    }
    let entity = Entity::new(target_uid.clone(), attributes, HashSet::new()).map_err(|_| ())?;
    Ok((target_uid, entity))
}

/// The action of a call to `name`: the catalog's entry, a utility method's own action, or the
/// kind's group itself for anything nobody configured.
pub(crate) fn action_id(
    kind: CapabilityKind,
    name: &str,
    capability: Option<&Capability>,
) -> String {
    match capability {
        Some(capability) => capability.action(),
        None if kind == CapabilityKind::Method && crate::UTILITY_METHODS.contains(&name) => {
            format!("{}:{name}", kind.as_str())
        }
        None => kind.as_str().to_owned(),
    }
}

/// The arguments the capability declares for policies, type-checked; `None` when one has the
/// wrong type (the call is malformed for its policies). Undeclared arguments are not shown.
pub(crate) fn declared_arguments(
    capability: Option<&Capability>,
    given: Option<&Map<String, Value>>,
) -> Option<Map<String, Value>> {
    let mut declared = Map::new();
    let (Some(capability), Some(given)) = (capability, given) else {
        return Some(declared);
    };
    for (name, ty) in &capability.arguments {
        let Some(value) = given.get(name) else {
            continue;
        };
        let fits = match ty {
            crate::ArgumentType::String => value.is_string(),
            crate::ArgumentType::Long => value.is_i64(),
            crate::ArgumentType::Bool => value.is_boolean(),
        };
        if !fits {
            return None;
        }
        declared.insert(name.clone(), value.clone());
    }
    Some(declared)
}

pub(crate) fn uid(kind: &str, id: &str) -> Result<EntityUid, ()> {
    // Parsing a type name runs Cedar's full parser: a few microseconds each, several times per
    // decision. The four names are fixed, so each is parsed once per process.
    static TYPES: std::sync::OnceLock<Option<[EntityTypeName; 4]>> = std::sync::OnceLock::new();
    let types = TYPES
        .get_or_init(|| {
            Some([
                "Action".parse().ok()?,
                USER.parse().ok()?,
                ROLE.parse().ok()?,
                TARGET.parse().ok()?,
            ])
        })
        .as_ref()
        .ok_or(())?;
    let index = ["Action", USER, ROLE, TARGET]
        .iter()
        .position(|name| *name == kind)
        .ok_or(())?;
    let kind = types.get(index).ok_or(())?.clone();
    Ok(EntityUid::from_type_name_and_id(kind, EntityId::new(id)))
}

pub(crate) fn string(text: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(text.to_owned())
}

/// The caller as a `User` entity whose parents are its `Role`s, plus those roles.
pub(crate) fn principal_entities(principal: &Principal) -> Result<(EntityUid, Vec<Entity>), ()> {
    let user = uid(USER, &principal.subject)?;
    let mut roles = HashSet::new();
    let mut entities = Vec::new();
    for role in &principal.roles {
        let role = uid(ROLE, role)?;
        entities.push(Entity::new_no_attrs(role.clone(), HashSet::new()));
        roles.insert(role);
    }
    let mut attributes = HashMap::from([
        ("subject".to_owned(), string(&principal.subject)),
        ("issuer".to_owned(), string(&principal.issuer)),
        (
            "scopes".to_owned(),
            RestrictedExpression::new_set(principal.scopes.iter().map(|s| string(s))),
        ),
    ]);
    if let Some(tenant) = &principal.tenant {
        attributes.insert("tenant".to_owned(), string(tenant));
    }
    if let Some(client) = &principal.client_id {
        attributes.insert("clientId".to_owned(), string(client));
    }
    entities.push(Entity::new(user.clone(), attributes, roles).map_err(|_| ())?);
    Ok((user, entities))
}
