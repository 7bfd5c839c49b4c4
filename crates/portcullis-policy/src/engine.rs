//! `authorize()` for calls and `visible()` for lists: one policy set, one meaning.
//!
//! A call is decided in this order, so that each outcome means one thing:
//! 1. Cedar, on the caller, the action and the target with its attributes. Any evaluation error
//!    denies (Cedar itself would skip the erroring policy and might allow). Default deny.
//! 2. Tenant pinning: a target of another tenant is denied (as not visible) unless a permitting
//!    policy carries `@cross_tenant`.
//! 3. Scopes: a caller the policies allow, whose token lacks a scope the capability needs, gets
//!    `StepUp` naming every scope it needs. No scope can fix a denial, so scopes come after.
//! 4. Approval: `@approval("required")` on a permitting policy, or a destructive, admin or
//!    spend tier (unless a permitting policy says `@approval("none")`), asks a human.
//!
//! Listing asks whether *some* call could be allowed: Cedar partial evaluation with the target
//! and the context unknown. A capability is hidden only when the policies deny whatever the
//! target and arguments are; a residual (a condition on the unknowns) means "list it". Scopes
//! do not hide anything (a missing scope is a step-up, not a denial).

use std::{
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, PolicySet, Request, RequestBuilder,
};
use serde_json::{Map, Value};

use crate::{
    Authorized, Capability, CapabilityKind, Catalog, Decision, ObjectAttributes, Pending,
    PolicyError, Principal, ReasonCode, Reasons, RiskTier, Visibility,
    budget::Budget,
    decision::Reads,
    entities::{
        Attribute, Target, action_id, declared_arguments, principal_entities, target_entity, uid,
    },
    facts::Facts,
    load,
    schema::cedar_schema,
};

/// One call to decide.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// What kind of capability it calls.
    pub kind: CapabilityKind,
    /// Its name as the caller wrote it (a resource's URI).
    pub name: &'a str,
    /// Its arguments, if any.
    pub arguments: Option<&'a Map<String, Value>>,
    /// The protocol era of the request (`2025-11-25`, `2026-07-28`).
    pub era: &'a str,
    /// The target object's attributes as its backend resolved them, for a capability with a
    /// resolver; its tenant is the one pinned, whatever the arguments say.
    pub object: Option<&'a ObjectAttributes>,
    /// A tier the upstream's own annotations suggest (`destructiveHint`): it can raise the
    /// configured tier, never lower it.
    pub risk_hint: Option<RiskTier>,
    /// The credential the call would travel with to its upstream.
    pub credential: Credential,
}

/// The credential a call would travel with to its upstream, as policies read it:
/// `context.credential` (`none`, `gateway`, `token-exchange`, `user-oauth`) and
/// `context.connected` (a `user-oauth` upstream the caller has connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    /// Which kind.
    pub kind: &'static str,
    /// Whether the caller's own credential there exists now.
    pub connected: bool,
}

impl Default for Credential {
    fn default() -> Self {
        Self {
            kind: "none",
            connected: false,
        }
    }
}

impl Call<'_> {
    /// The call's risk tier: the configured (or default) tier, raised by the upstream's hint.
    fn risk_of(&self, capability: Option<&Capability>) -> RiskTier {
        let base = capability.map_or(RiskTier::unconfigured_for(self.kind, self.name), |c| c.risk);
        self.risk_hint.map_or(base, |hint| base.max(hint))
    }
}

/// The loaded, validated policy set with its catalog and schema.
pub struct PolicyEngine {
    catalog: Catalog,
    policies: PolicySet,
    actions: Entities,
    version: String,
    authorizer: Authorizer,
    visible: Budget<VisibleByKind>,
    // Cedar's verdicts on calls, when no policy reads the time (see `Reads`).
    decided: Budget<HashMap<String, (bool, Vec<String>)>>,
    reads: Reads,
    /// Each policy's annotations, read once: Cedar parses an annotation key on every lookup.
    annotations: HashMap<String, HashMap<String, String>>,
    /// The policies that can depend on the target object (see `Facts::object_readers`).
    object_readers: std::collections::HashSet<String>,
    /// For each catalog entry, the class of capabilities its list decision is shared with
    /// (see [`PolicyEngine::class_of`]), as a number; `None`: decided on its own.
    classes: Vec<Option<usize>>,
    /// The class of unconfigured capabilities of each kind (none when sharing is off).
    unconfigured_classes: [Option<usize>; 4],
}

/// The longest name or decision key kept in a cache.
const MAX_KEPT_KEY: usize = 1024;

/// One principal's list decisions: per kind, by name.
type VisibleByKind = [HashMap<String, bool>; 4];

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Whether any policy reads `context.connected`: only then need a caller's connection be
    /// looked up before deciding.
    pub fn reads_connected(&self) -> bool {
        self.reads.connected
    }

    /// Load `text` (the contents of `file`) against the schema generated from `catalog`.
    pub fn new(catalog: Catalog, file: &str, text: &str) -> Result<Self, PolicyError> {
        let schema_text = cedar_schema(&catalog);
        let schema = load::schema(&schema_text)?;
        let policies = load::policies(file, text, &schema)?;
        let actions = schema
            .action_entities()
            .map_err(|error| PolicyError::Schema(error.to_string()))?;
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("{schema_text}\0{text}").as_bytes(),
        );
        let version: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let annotations = policies
            .policies()
            .map(|policy| {
                let pairs = policy
                    .annotations()
                    .map(|(key, value)| (key.to_owned(), value.to_owned()))
                    .collect();
                (policy.id().to_string(), pairs)
            })
            .collect();
        let facts = Facts::of(&policies);
        let (classes, unconfigured_classes) = classes(&catalog, &facts);
        Ok(Self {
            classes,
            unconfigured_classes,
            catalog,
            policies,
            actions,
            version,
            authorizer: Authorizer::new(),
            visible: Budget::new(),
            decided: Budget::new(),
            reads: facts.reads,
            annotations,
            object_readers: facts.object_readers,
        })
    }

    /// The policy set version: a digest of the schema and the policies.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub(crate) fn policies(&self) -> &PolicySet {
        &self.policies
    }

    pub(crate) fn actions(&self) -> &Entities {
        &self.actions
    }

    /// The Cedar schema policies are validated against, as text.
    pub fn schema_text(&self) -> String {
        cedar_schema(&self.catalog)
    }

    /// The risk tier of `call`: its capability's (or the default), raised by its hint.
    pub fn risk(&self, call: &Call<'_>) -> RiskTier {
        let capability = self.catalog.find(call.kind, call.name).map(|(c, _)| c);
        call.risk_of(capability)
    }

    /// Decide one call.
    pub fn authorize(&self, principal: &Principal, call: &Call<'_>) -> Decision {
        let found = self.catalog.find(call.kind, call.name);
        let capability = found.as_ref().map(|(capability, _)| *capability);
        let segments = found.as_ref().map_or(&[][..], |(_, s)| s.as_slice());
        let reasons = |codes: Vec<ReasonCode>, policies: Vec<String>| Reasons {
            policies,
            codes,
            policy_version: self.version.clone(),
        };
        let named = |field: Option<&String>| {
            let field = field?;
            segments
                .iter()
                .find(|(name, _)| name == field)
                .map(|(_, value)| value.clone())
                .or_else(|| call.arguments?.get(field)?.as_str().map(str::to_owned))
        };
        // SECURITY: an object or tenant given as anything but a string (a list, a number,
        // null) would be decided as if absent, skipping the tenant pin and every policy that
        // reads the object, and a backend may still read it as one: refused instead.
        let unreadable = capability
            .into_iter()
            .flat_map(|c| [c.object.as_ref(), c.tenant.as_ref()])
            .flatten()
            .filter(|field| !segments.iter().any(|(name, _)| name == *field))
            .any(|field| {
                call.arguments
                    .and_then(|arguments| arguments.get(field.as_str()))
                    .is_some_and(|value| !value.is_string())
            });
        // Refused as invalid only where the caller may see the capability: for one it may
        // not, the answer is that of a capability that does not exist.
        if unreadable {
            return Decision::Deny {
                visibility: self.deny_visibility(principal, call),
                reasons: reasons(vec![ReasonCode::ArgumentInvalid], Vec::new()),
            };
        }
        let object = named(capability.and_then(|c| c.object.as_ref()));
        let resolved = call.object;
        let tenant = resolved
            .and_then(|attributes| attributes.tenant.clone())
            .or_else(|| named(capability.and_then(|c| c.tenant.as_ref())));
        let Some(arguments) = declared_arguments(capability, call.arguments) else {
            return Decision::Deny {
                visibility: self.deny_visibility(principal, call),
                reasons: reasons(vec![ReasonCode::ArgumentInvalid], Vec::new()),
            };
        };
        let evaluated = self.evaluate(
            principal,
            call,
            capability,
            Target {
                object: object.as_deref(),
                tenant: tenant.as_deref(),
                resolved,
            },
            arguments,
        );
        let (permitted, policies) = match evaluated {
            Ok(outcome) => outcome,
            Err(code) => {
                return Decision::Deny {
                    visibility: self.deny_visibility(principal, call),
                    reasons: reasons(vec![code], Vec::new()),
                };
            }
        };
        if !permitted {
            let code = if policies.is_empty() {
                ReasonCode::NoPermit
            } else {
                ReasonCode::Forbidden
            };
            // A forbid that looks at the target object hides the object: telling the caller
            // "denied" would tell it the object exists. One that looks only at the caller or
            // the arguments is a denial it may see.
            let visibility = if policies.iter().any(|id| self.object_readers.contains(id)) {
                Visibility::Hidden
            } else {
                self.deny_visibility(principal, call)
            };
            return Decision::Deny {
                visibility,
                reasons: reasons(vec![code], policies),
            };
        }
        let annotated = |key: &str, value: Option<&str>| {
            policies.iter().any(|id| {
                self.annotations
                    .get(id)
                    .and_then(|annotations| annotations.get(key))
                    .is_some_and(|found| value.is_none_or(|v| v == found))
            })
        };
        if let Some(target_tenant) = &tenant
            && principal.tenant.as_ref() != Some(target_tenant)
            && !annotated("cross_tenant", None)
        {
            return Decision::Deny {
                visibility: Visibility::Hidden,
                reasons: reasons(vec![ReasonCode::TenantMismatch], policies),
            };
        }
        if let Some(capability) = capability
            && let Some(scopes) = self.catalog.missing_for(capability, &principal.scopes)
        {
            return Decision::StepUp {
                scopes: scopes.to_vec(),
                reasons: reasons(vec![ReasonCode::MissingScope], policies),
            };
        }
        let risk = call.risk_of(capability);
        // `out_of_band`: only a person on the approval page may approve, whatever the tier, so
        // an automated client cannot answer for its own call.
        let out_of_band = annotated("approval", Some("out_of_band"));
        let ask = out_of_band
            || annotated("approval", Some("required"))
            || (risk >= RiskTier::Destructive && !annotated("approval", Some("none")));
        if ask {
            return Decision::AskApproval(Pending::new(
                reasons(vec![ReasonCode::ApprovalRequired], policies),
                risk,
                out_of_band,
            ));
        }
        Decision::Allow(Authorized::new(reasons(
            vec![ReasonCode::Permitted],
            policies,
        )))
    }

    /// How many visibility answers and call verdicts this policy set keeps, and the bytes
    /// they hold (bounded per principal and in all: see `budget`).
    pub fn kept(&self) -> (usize, usize, usize) {
        let names = self.visible.fold(0, |sum, kinds| {
            sum + kinds.iter().map(HashMap::len).sum::<usize>()
        });
        let verdicts = self.decided.fold(0, |sum, verdicts| sum + verdicts.len());
        (names, verdicts, self.visible.bytes() + self.decided.bytes())
    }

    /// Whether `name` may be listed for `principal`: some call to it could be allowed.
    pub fn visible(&self, principal: &Principal, kind: CapabilityKind, name: &str) -> bool {
        self.visible_all(principal, kind, &[name])
            .first()
            .copied()
            .unwrap_or(false)
    }

    /// [`PolicyEngine::visible`] for a whole list at once: the caller's key is computed once
    /// and the cache locked twice, not per item. Decisions are cached per principal (every
    /// attribute a decision can depend on) for the life of this policy set.
    pub fn visible_all(
        &self,
        principal: &Principal,
        kind: CapabilityKind,
        names: &[&str],
    ) -> Vec<bool> {
        let fingerprint = principal.fingerprint(self.reads);
        let mut answers: Vec<Option<bool>> = self
            .visible
            .read(&fingerprint, |kinds| {
                let known = &kinds[kind.index()];
                names.iter().map(|name| known.get(*name).copied()).collect()
            })
            .unwrap_or_else(|| vec![None; names.len()]);
        // Capabilities the policies cannot tell apart share one evaluation (see `classes`), and
        // every evaluation of this list shares one set of entities.
        let mut pending: Vec<(usize, Option<usize>)> = Vec::new();
        let mut representatives: Vec<(&str, Option<&Capability>)> = Vec::new();
        let mut by_class: HashMap<usize, usize> = HashMap::new();
        for (position, (answer, name)) in answers.iter().zip(names).enumerate() {
            if answer.is_some() {
                continue;
            }
            let capability = self.catalog.find(kind, name).map(|(c, _)| c);
            let class = match self.catalog.position(kind, name) {
                Some(index) => self.classes.get(index).copied().flatten(),
                // A template-matched resource, or a capability nobody configured.
                None if capability.is_some() => None,
                None if kind == CapabilityKind::Method && crate::UTILITY_METHODS.contains(name) => {
                    None
                }
                None => self.unconfigured_classes[kind.index()],
            };
            let evaluation = match class.and_then(|class| by_class.get(&class).copied()) {
                Some(shared) => shared,
                None => {
                    representatives.push((name, capability));
                    if let Some(class) = class {
                        by_class.insert(class, representatives.len() - 1);
                    }
                    representatives.len() - 1
                }
            };
            pending.push((position, Some(evaluation)));
        }
        let verdicts = self.possibly_allowed_all(principal, kind, &representatives);
        let mut learned = Vec::new();
        for (position, evaluation) in pending {
            let visible = evaluation
                .and_then(|e| verdicts.get(e).copied())
                .unwrap_or(false);
            if let (Some(answer), Some(name)) = (answers.get_mut(position), names.get(position)) {
                *answer = Some(visible);
                learned.push(((*name).to_owned(), visible));
            }
        }
        if !learned.is_empty() {
            // SECURITY: names come from callers (a call to a tool that does not exist is
            // answered from here too): a long name is computed again next time, and what one
            // principal's memory holds is bounded in bytes (see `budget`).
            self.visible.add(&fingerprint, |kinds| {
                let known = &mut kinds[kind.index()];
                learned
                    .into_iter()
                    .filter(|(name, _)| name.len() <= MAX_KEPT_KEY)
                    .map(|(name, visible)| {
                        let weight = name.len() + crate::budget::ENTRY_OVERHEAD;
                        known.insert(name, visible).map_or(weight, |_| 0)
                    })
                    .sum()
            });
        }
        answers.into_iter().map(|a| a.unwrap_or(false)).collect()
    }

    fn deny_visibility(&self, principal: &Principal, call: &Call<'_>) -> Visibility {
        if self.visible(principal, call.kind, call.name) {
            Visibility::Visible
        } else {
            Visibility::Hidden
        }
    }

    /// Partial evaluation with what a list knows: the caller and the capability. The call's
    /// object and tenant (when the capability names them) and its context are unknown, so a
    /// policy that depends on them leaves a residual, which counts as "possibly allowed".
    fn possibly_allowed_all(
        &self,
        principal: &Principal,
        kind: CapabilityKind,
        items: &[(&str, Option<&Capability>)],
    ) -> Vec<bool> {
        if items.is_empty() {
            return Vec::new();
        }
        let Ok((principal_uid, mut entities)) = principal_entities(principal) else {
            return vec![false; items.len()];
        };
        let mut requests = Vec::with_capacity(items.len());
        let mut actions = std::collections::HashSet::new();
        let mut targets = std::collections::HashSet::new();
        // Targets that share a uid (unconfigured capabilities: the uid names the kind's action)
        // cannot sit in one set of entities: those are decided one at a time.
        let mut apart = Vec::new();
        for (index, (name, capability)) in items.iter().enumerate() {
            let action = action_id(kind, name, *capability);
            let Ok(action_uid) = uid("Action", &action) else {
                requests.push(None);
                continue;
            };
            let names = |field: Option<&String>| {
                if field.is_some() {
                    Attribute::Unknown
                } else {
                    Attribute::Absent
                }
            };
            let object = names(capability.and_then(|c| c.object.as_ref()));
            let tenant = names(capability.and_then(|c| c.tenant.as_ref()));
            let risk = capability.map_or(RiskTier::unconfigured_for(kind, name), |c| c.risk);
            let Ok((target_uid, target)) =
                target_entity(kind, name, *capability, object, tenant, None, risk)
            else {
                requests.push(None);
                continue;
            };
            if !targets.insert(target_uid.clone()) {
                apart.push(index);
                requests.push(None);
                continue;
            }
            entities.push(target);
            if actions.insert(action_uid.clone()) {
                entities.extend(self.actions.get(&action_uid).cloned());
            }
            requests.push(Some((action_uid, target_uid)));
        }
        let Ok(entities) = Entities::from_entities(entities, None) else {
            return vec![false; items.len()];
        };
        let mut verdicts: Vec<bool> = requests
            .into_iter()
            .map(|request| {
                let Some((action_uid, target_uid)) = request else {
                    return false;
                };
                // The context is left unknown: what a list cannot know.
                let request = RequestBuilder::default()
                    .principal(principal_uid.clone())
                    .action(action_uid)
                    .resource(target_uid)
                    .build();
                let response =
                    self.authorizer
                        .is_authorized_partial(&request, &self.policies, &entities);
                response.decision() != Some(CedarDecision::Deny)
            })
            .collect();
        for index in apart {
            if let (Some(item), Some(verdict)) = (items.get(index), verdicts.get_mut(index)) {
                *verdict = self
                    .possibly_allowed_all(principal, kind, std::slice::from_ref(item))
                    .first()
                    .copied()
                    .unwrap_or(false);
            }
        }
        verdicts
    }

    /// Cedar's verdict: `(permitted, determining policy ids)`, or the reason it could not
    /// decide (every such case denies).
    fn evaluate(
        &self,
        principal: &Principal,
        call: &Call<'_>,
        capability: Option<&Capability>,
        target: Target<'_>,
        arguments: Map<String, Value>,
    ) -> Result<(bool, Vec<String>), ReasonCode> {
        // Everything a verdict that ignores the time can depend on: the principal as policies
        // see it, the action, every attribute of the target, the era and the arguments.
        let key = (!self.reads.time).then(|| {
            let resolved = target.resolved;
            let field = |value: Option<&str>| value.unwrap_or("\u{1}").to_owned();
            let rest = [
                action_id(call.kind, call.name, capability),
                call.name.to_owned(),
                field(target.object),
                field(target.tenant),
                field(resolved.and_then(|r| r.owner.as_deref())),
                field(resolved.and_then(|r| r.classification.as_deref())),
                call.risk_of(capability).as_str().to_owned(),
                call.era.to_owned(),
                call.credential.kind.to_owned(),
                call.credential.connected.to_string(),
                // Declared arguments only, type-checked, in the catalog's order.
                Value::Object(arguments.clone()).to_string(),
            ]
            .join("\0");
            (principal.fingerprint(self.reads), rest)
        });
        if let Some((principal, rest)) = &key
            && let Some(Some(known)) = self
                .decided
                .read(principal, |verdicts| verdicts.get(rest).cloned())
        {
            return Ok(known);
        }
        let verdict = self.evaluate_fully(principal, call, capability, target, arguments)?;
        // A caller chooses names and arguments: a long key is decided every time, not kept.
        if let Some((principal, rest)) = key.filter(|(_, rest)| rest.len() <= MAX_KEPT_KEY) {
            let weight = rest.len()
                + verdict.1.iter().map(String::len).sum::<usize>()
                + crate::budget::ENTRY_OVERHEAD;
            self.decided.add(&principal, |verdicts| {
                verdicts.insert(rest, verdict.clone()).map_or(weight, |_| 0)
            });
        }
        Ok(verdict)
    }

    fn evaluate_fully(
        &self,
        principal: &Principal,
        call: &Call<'_>,
        capability: Option<&Capability>,
        target: Target<'_>,
        arguments: Map<String, Value>,
    ) -> Result<(bool, Vec<String>), ReasonCode> {
        let action = action_id(call.kind, call.name, capability);
        let action_uid = uid("Action", &action).map_err(|()| ReasonCode::PolicyError)?;
        let (principal_uid, mut entities) =
            principal_entities(principal).map_err(|()| ReasonCode::PolicyError)?;
        let (target_uid, target) = target_entity(
            call.kind,
            call.name,
            capability,
            target.object.map_or(Attribute::Absent, Attribute::Known),
            target.tenant.map_or(Attribute::Absent, Attribute::Known),
            target.resolved,
            call.risk_of(capability),
        )
        .map_err(|()| ReasonCode::PolicyError)?;
        entities.push(target);
        entities.extend(self.actions.get(&action_uid).cloned());
        let entities =
            Entities::from_entities(entities, None).map_err(|_| ReasonCode::PolicyError)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let context = serde_json::json!({
            "era": call.era,
            "credential": call.credential.kind,
            "connected": call.credential.connected,
            "time": i64::try_from(now).unwrap_or(i64::MAX),
            "arguments": Value::Object(arguments),
        });
        // Built here from checked values (declared arguments were type-checked above), so the
        // schema-directed parse and request validation, which dominated the cost of a
        // decision, are skipped; `PolicyEngine::new` validated the policies against the schema.
        let context =
            Context::from_json_value(context, None).map_err(|_| ReasonCode::ArgumentInvalid)?;
        let request = Request::new(principal_uid, action_uid, target_uid, context, None)
            .map_err(|_| ReasonCode::PolicyError)?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        if response.diagnostics().errors().next().is_some() {
            return Err(ReasonCode::PolicyError);
        }
        // Cedar reports a set; sorted, the same decision always reads the same.
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policies.sort();
        Ok((response.decision() == CedarDecision::Allow, policies))
    }
}

/// Whether a policy (as text) can depend on the target object (its attributes or identity).
/// Conservative: any mention of `resource` beyond the bare scope variable counts.
/// The classes of capabilities that share one list decision: when no policy names their action
/// (or a target of it) and none could read a capability's own name, a list decision can depend
/// only on the kind, the action groups (family), the risk tier and which of object and tenant
/// the capability names. For each catalog entry its class (`None`: decided on its own), and
/// the class of unconfigured capabilities per kind. Resources are always decided on their own
/// (their URI templates are their names); so are the protocol's utility methods, which have
/// actions of their own.
fn classes(catalog: &Catalog, facts: &Facts) -> (Vec<Option<usize>>, [Option<usize>; 4]) {
    let names_read = facts.names_read;
    let mut keys: HashMap<String, usize> = HashMap::new();
    let mut class = |key: String| {
        let next = keys.len();
        *keys.entry(key).or_insert(next)
    };
    let shared = |kind: CapabilityKind| !names_read && kind != CapabilityKind::Resource;
    let classes = catalog
        .capabilities()
        .iter()
        .map(|capability| {
            let action = capability.action();
            (shared(capability.kind) && !facts.names(action.as_str())).then(|| {
                class(format!(
                    "{}\0{}\0{}\0{}\0{}",
                    capability.kind.as_str(),
                    capability.family,
                    capability.risk.as_str(),
                    capability.object.is_some(),
                    capability.tenant.is_some()
                ))
            })
        })
        .collect();
    let mut unconfigured = [None; 4];
    for kind in [
        CapabilityKind::Tool,
        CapabilityKind::Prompt,
        CapabilityKind::Method,
    ] {
        if shared(kind) {
            unconfigured[kind.index()] = Some(class(format!("{}\0\u{1}", kind.as_str())));
        }
    }
    (classes, unconfigured)
}
