//! `authorize()` and `visible()` on the reference scenario (DESIGN.md §5), one test per
//! semantic line of DESIGN.md §2, plus randomized checks of the invariants.

#![expect(clippy::unwrap_used, reason = "test setup fails loudly")]

use portcullis_policy::{
    ArgumentType, Call, Capability, CapabilityKind, Catalog, Decision, PolicyEngine, PolicyError,
    Principal, ReasonCode, RiskTier, ScopeHierarchy, Visibility,
};
use serde_json::{Map, Value, json};

fn capability(name: &str, family: &str, scopes: &[&str], risk: RiskTier) -> Capability {
    Capability {
        kind: CapabilityKind::Tool,
        name: name.into(),
        family: family.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        risk,
        object: Some("id".into()),
        tenant: Some("tenant".into()),
        arguments: vec![("amount".into(), ArgumentType::Long)],
        resolver: None,
        consent: None,
    }
}

fn catalog() -> Catalog {
    Catalog::new(
        [
            capability(
                "search_policies",
                "policies",
                &["policies:read"],
                RiskTier::Read,
            ),
            capability(
                "read_policy",
                "policies",
                &["policies:read"],
                RiskTier::Read,
            ),
            capability(
                "update_policy",
                "policies",
                &["policies:write"],
                RiskTier::Write,
            ),
            capability(
                "delete_record",
                "records",
                &["records:delete"],
                RiskTier::Destructive,
            ),
            capability("send_email", "email", &["email:send"], RiskTier::Write),
            Capability {
                kind: CapabilityKind::Resource,
                name: "policy://{tenant}/{id}".into(),
                family: "policies".into(),
                scopes: vec!["policies:read".into()],
                risk: RiskTier::Read,
                object: Some("id".into()),
                tenant: Some("tenant".into()),
                arguments: Vec::new(),
                resolver: None,
                consent: None,
            },
        ],
        ScopeHierarchy::new([("policies:write".into(), vec!["policies:read".into()])]),
    )
}

const POLICIES: &str = r#"
@id("readers")
permit (principal in Role::"viewer", action in Action::"family:policies", resource)
when { resource.risk == "read" };

@id("editors")
permit (principal in Role::"editor", action in Action::"family:policies", resource);

@id("admins-cross-tenant")
@cross_tenant
permit (principal in Role::"admin", action in Action::"family:policies", resource);

@id("admins-delete")
permit (principal in Role::"admin", action == Action::"tool:delete_record", resource);

@id("mail-with-approval")
@approval("required")
permit (principal in Role::"editor", action == Action::"tool:send_email", resource);

@id("no-big-numbers")
forbid (principal, action, resource)
when { context.arguments has amount && context.arguments.amount > 1000 };

@id("echo-for-everyone")
permit (principal, action == Action::"tool", resource)
when { resource.capability == "echo" };
"#;

fn engine() -> PolicyEngine {
    PolicyEngine::new(catalog(), "policies.cedar", POLICIES).unwrap()
}

fn person(subject: &str, tenant: &str, roles: &[&str], scopes: &[&str]) -> Principal {
    Principal {
        subject: subject.into(),
        issuer: "https://issuer.example".into(),
        tenant: Some(tenant.into()),
        roles: roles.iter().map(|s| (*s).to_owned()).collect(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        client_id: None,
    }
}

fn call<'a>(name: &'a str, arguments: &'a Map<String, Value>) -> Call<'a> {
    Call {
        kind: CapabilityKind::Tool,
        name,
        arguments: Some(arguments),
        era: "2026-07-28",
        object: None,
        risk_hint: None,
        credential: Default::default(),
    }
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn codes(decision: &Decision) -> Vec<ReasonCode> {
    decision.reasons().codes.clone()
}

#[test]
fn the_seed_example_a_viewer_sees_search_but_not_update() {
    let engine = engine();
    let user42 = person("user-42", "tenant-a", &["viewer"], &["policies:read"]);
    assert!(engine.visible(&user42, CapabilityKind::Tool, "search_policies"));
    assert!(!engine.visible(&user42, CapabilityKind::Tool, "update_policy"));
    let a = args(json!({"tenant": "tenant-a", "query": "leave"}));
    let decision = engine.authorize(&user42, &call("search_policies", &a));
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    assert_eq!(decision.reasons().policies, ["readers"]);
    let decision = engine.authorize(&user42, &call("update_policy", &a));
    assert!(
        matches!(
            decision,
            Decision::Deny {
                visibility: Visibility::Hidden,
                ..
            }
        ),
        "{decision:?}"
    );
    assert_eq!(codes(&decision), [ReasonCode::NoPermit]);
}

#[test]
fn an_editor_without_the_scope_sees_update_and_is_asked_to_step_up() {
    let engine = engine();
    let narrow = person("editor-a", "tenant-a", &["editor"], &["policies:read"]);
    assert!(engine.visible(&narrow, CapabilityKind::Tool, "update_policy"));
    let a = args(json!({"tenant": "tenant-a", "id": "POL-1"}));
    match engine.authorize(&narrow, &call("update_policy", &a)) {
        Decision::StepUp { scopes, reasons } => {
            assert_eq!(scopes, ["policies:write"]);
            assert_eq!(reasons.codes, [ReasonCode::MissingScope]);
        }
        other => panic!("{other:?}"),
    }
    // The hierarchy: policies:write alone also covers read_policy.
    let wide = person("editor-a", "tenant-a", &["editor"], &["policies:write"]);
    for name in ["update_policy", "read_policy"] {
        let decision = engine.authorize(&wide, &call(name, &a));
        assert!(
            matches!(decision, Decision::Allow(_)),
            "{name}: {decision:?}"
        );
    }
}

#[test]
fn a_target_in_another_tenant_is_not_visible_unless_a_policy_crosses_tenants() {
    let engine = engine();
    let other = args(json!({"tenant": "tenant-b", "id": "POL-9"}));
    let editor = person("editor-a", "tenant-a", &["editor"], &["policies:write"]);
    let decision = engine.authorize(&editor, &call("read_policy", &other));
    assert!(
        matches!(
            decision,
            Decision::Deny {
                visibility: Visibility::Hidden,
                ..
            }
        ),
        "{decision:?}"
    );
    assert_eq!(codes(&decision), [ReasonCode::TenantMismatch]);
    let admin = person("admin-a", "tenant-a", &["admin"], &["policies:read"]);
    let decision = engine.authorize(&admin, &call("read_policy", &other));
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    // The same holds for a tenant named by a resource URI.
    let uri = Call {
        kind: CapabilityKind::Resource,
        name: "policy://tenant-b/POL-9",
        arguments: None,
        era: "2025-11-25",
        object: None,
        risk_hint: None,
        credential: Default::default(),
    };
    let decision = engine.authorize(&editor, &uri);
    assert_eq!(codes(&decision), [ReasonCode::TenantMismatch]);
    let own = Call {
        name: "policy://tenant-a/POL-1",
        ..uri
    };
    assert!(matches!(
        engine.authorize(&editor, &own),
        Decision::Allow(_)
    ));
}

#[test]
fn forbid_wins_and_a_visible_capability_is_denied_in_plain_words() {
    let engine = engine();
    let editor = person("editor-a", "tenant-a", &["editor"], &["policies:write"]);
    let big = args(json!({"tenant": "tenant-a", "amount": 5000}));
    let decision = engine.authorize(&editor, &call("update_policy", &big));
    assert!(
        matches!(
            decision,
            Decision::Deny {
                visibility: Visibility::Visible,
                ..
            }
        ),
        "{decision:?}"
    );
    assert_eq!(codes(&decision), [ReasonCode::Forbidden]);
    assert_eq!(decision.reasons().policies, ["no-big-numbers"]);
    let wrong_type = args(json!({"tenant": "tenant-a", "amount": "lots"}));
    let decision = engine.authorize(&editor, &call("update_policy", &wrong_type));
    assert_eq!(codes(&decision), [ReasonCode::ArgumentInvalid]);
}

#[test]
fn an_object_or_tenant_that_is_not_a_string_is_refused_not_decided_as_absent() {
    let engine = engine();
    let viewer = person("viewer-a", "tenant-a", &["viewer"], &["policies:read"]);
    // Without the pin, tenant-b's object would be read as "no tenant named".
    for arguments in [
        json!({"tenant": ["tenant-b"], "id": "P-1"}),
        json!({"tenant": null, "id": "P-1"}),
        json!({"tenant": "tenant-a", "id": ["P-B1"]}),
        json!({"tenant": "tenant-a", "id": 7}),
    ] {
        let decision = engine.authorize(&viewer, &call("read_policy", &args(arguments.clone())));
        assert_eq!(
            codes(&decision),
            [ReasonCode::ArgumentInvalid],
            "{arguments}"
        );
    }
    let fine = args(json!({"tenant": "tenant-a", "id": "P-1"}));
    assert!(matches!(
        engine.authorize(&viewer, &call("read_policy", &fine)),
        Decision::Allow(_)
    ));
}

// See: review of issue 14. An unreadable object or tenant, or a declared argument of the
// wrong type, was refused as "invalid" (visible) even on a capability the caller may not see:
// the refusal told the caller the hidden tool exists. It answers as the hidden one it is.
#[test]
fn invalid_arguments_to_a_hidden_capability_answer_as_hidden() {
    let engine = engine();
    let viewer = person("viewer-a", "tenant-a", &["viewer"], &["policies:read"]);
    let denied_as = |decision: &Decision| match decision {
        Decision::Deny { visibility, .. } => Some(*visibility),
        _ => None,
    };
    assert!(!engine.visible(&viewer, CapabilityKind::Tool, "update_policy"));
    for arguments in [
        json!({"tenant": ["tenant-a"], "id": "P-1"}),
        json!({"tenant": "tenant-a", "id": "P-1", "amount": "many"}),
    ] {
        let decision = engine.authorize(&viewer, &call("update_policy", &args(arguments.clone())));
        assert_eq!(
            denied_as(&decision),
            Some(Visibility::Hidden),
            "{arguments}: {decision:?}"
        );
    }
    // Where the caller may see it, the same arguments are refused as invalid, in the open.
    let invalid = args(json!({"tenant": ["tenant-a"], "id": "P-1"}));
    let decision = engine.authorize(&viewer, &call("read_policy", &invalid));
    assert_eq!(
        denied_as(&decision),
        Some(Visibility::Visible),
        "{decision:?}"
    );
}

#[test]
fn names_and_arguments_a_caller_makes_up_do_not_grow_the_caches_without_bound() {
    let engine = engine();
    let viewer = person("viewer-a", "tenant-a", &["viewer"], &["policies:read"]);
    let made_up: Vec<String> = (0..25_000).map(|n| format!("no_such_tool_{n}")).collect();
    for chunk in made_up.chunks(1000) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert!(
            engine
                .visible_all(&viewer, CapabilityKind::Tool, &names)
                .iter()
                .all(|v| !v)
        );
    }
    let long = "x".repeat(100_000);
    assert!(!engine.visible(&viewer, CapabilityKind::Tool, &long));
    let (names, _, bytes) = engine.kept();
    // One principal's memory is bounded in bytes (1 MiB), however many names it makes up.
    assert!(names < 15_000, "kept {names} names");
    assert!(bytes <= 1024 * 1024 + 4096, "kept {bytes} bytes");
    // Answers past the bound are still right, just not kept.
    assert!(engine.visible(&viewer, CapabilityKind::Tool, "read_policy"));
    assert!(!engine.visible(&viewer, CapabilityKind::Tool, "no_such_tool_24999"));
    // A call with a huge argument is decided, and its verdict not kept.
    let (_, before, _) = engine.kept();
    let huge = args(json!({"tenant": "tenant-a", "id": "x".repeat(100_000)}));
    assert!(matches!(
        engine.authorize(&viewer, &call("read_policy", &huge)),
        Decision::Allow(_)
    ));
    assert_eq!(engine.kept().1, before);
    let small = args(json!({"tenant": "tenant-a", "id": "P-1"}));
    assert!(matches!(
        engine.authorize(&viewer, &call("read_policy", &small)),
        Decision::Allow(_)
    ));
    assert_eq!(engine.kept().1, before + 1, "a short key is kept");
}

#[test]
fn high_risk_tiers_and_annotated_policies_ask_for_approval() {
    let engine = engine();
    let admin = person("admin-a", "tenant-a", &["admin"], &["records:delete"]);
    let a = args(json!({"tenant": "tenant-a", "id": "R-1"}));
    let decision = engine.authorize(&admin, &call("delete_record", &a));
    assert!(matches!(decision, Decision::AskApproval(_)), "{decision:?}");
    let editor = person("editor-a", "tenant-a", &["editor"], &["email:send"]);
    let decision = engine.authorize(&editor, &call("send_email", &a));
    assert!(matches!(decision, Decision::AskApproval(_)), "{decision:?}");
}

#[test]
fn unconfigured_capabilities_fall_under_their_kinds_action_and_default_deny() {
    let engine = engine();
    let anyone = person("user-42", "tenant-a", &[], &[]);
    let none = Map::new();
    assert!(matches!(
        engine.authorize(&anyone, &call("echo", &none)),
        Decision::Allow(_)
    ));
    assert!(engine.visible(&anyone, CapabilityKind::Tool, "echo"));
    let decision = engine.authorize(&anyone, &call("rm_rf", &none));
    assert!(matches!(
        decision,
        Decision::Deny {
            visibility: Visibility::Hidden,
            ..
        }
    ));
    // An empty policy set denies everything.
    let empty = PolicyEngine::new(catalog(), "empty.cedar", "").unwrap();
    let admin = person("admin-a", "tenant-a", &["admin"], &["policies:read"]);
    assert!(!empty.visible(&admin, CapabilityKind::Tool, "search_policies"));
    assert!(matches!(
        empty.authorize(&admin, &call("search_policies", &none)),
        Decision::Deny { .. }
    ));
}

#[test]
fn a_policy_that_errors_denies_even_when_another_permits() {
    // `amount * big` overflows for any amount above 1: Cedar would skip the erroring forbid
    // and allow through "editors"; Portcullis denies.
    let policies = format!(
        "{POLICIES}\n@id(\"overflows\")\nforbid (principal, action, resource) when {{ context.arguments has amount && context.arguments.amount * 4611686018427387904 > 0 }};\n"
    );
    let engine = PolicyEngine::new(catalog(), "p.cedar", &policies).unwrap();
    let editor = person("editor-a", "tenant-a", &["editor"], &["policies:write"]);
    let a = args(json!({"tenant": "tenant-a", "amount": 3}));
    let decision = engine.authorize(&editor, &call("update_policy", &a));
    assert!(matches!(decision, Decision::Deny { .. }), "{decision:?}");
    assert_eq!(codes(&decision), [ReasonCode::PolicyError]);
}

#[test]
fn a_typo_in_an_attribute_fails_with_the_file_line_and_attribute() {
    let typo = "@id(\"ok\")\npermit (principal, action, resource);\n\n@id(\"typo\")\npermit (principal, action, resource)\nwhen { resource.tenat == \"x\" };\n";
    let strict = "@id(\"unguarded\")\npermit (principal, action, resource)\nwhen { resource.tenant == \"x\" };\n";
    let unknown_action = "permit (principal, action == Action::\"tool:updat_policy\", resource);\n";
    for (text, line, needle) in [
        (typo, 6, "tenat"),
        (strict, 3, "tenant"),
        (unknown_action, 1, "updat_policy"),
    ] {
        match PolicyEngine::new(catalog(), "policies.cedar", text) {
            Err(PolicyError::Invalid { problems, .. }) => {
                assert!(
                    problems.contains(&format!("policies.cedar:{line}:")),
                    "{problems}"
                );
                assert!(problems.contains(needle), "{problems}");
            }
            other => panic!("{needle}: {other:?}"),
        }
    }
    let syntax = "permit (principal, action, resource) when { ;\n";
    assert!(matches!(
        PolicyEngine::new(catalog(), "policies.cedar", syntax),
        Err(PolicyError::Invalid { .. })
    ));
    let twice = "@id(\"a\")\npermit (principal, action, resource);\n@id(\"a\")\nforbid (principal, action, resource);\n";
    assert!(matches!(
        PolicyEngine::new(catalog(), "policies.cedar", twice),
        Err(PolicyError::Invalid { problems, .. }) if problems.contains("two policies")
    ));
}

/// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const POOL: &[&str] = &[
    "permit (principal in Role::\"viewer\", action in Action::\"family:policies\", resource) when { resource.risk == \"read\" };",
    "permit (principal in Role::\"editor\", action, resource) when { resource has tenant && principal has tenant && resource.tenant == principal.tenant };",
    "permit (principal, action == Action::\"tool:send_email\", resource) when { context.arguments has amount && context.arguments.amount < 10 };",
    "forbid (principal in Role::\"suspended\", action, resource);",
    "forbid (principal, action, resource) when { context.arguments has amount && context.arguments.amount > 100 };",
    "permit (principal in Role::\"admin\", action, resource);",
    "forbid (principal, action in Action::\"family:records\", resource) unless { principal in Role::\"admin\" };",
    "permit (principal, action, resource) when { context.arguments has amount && context.arguments.amount * 4611686018427387904 > 0 };",
];

/// A catalog of the same tools with random families, risk tiers and tenant arguments (every
/// family and tool the policy pool names stays present, so each set validates).
fn random_catalog(rng: &mut Rng) -> Catalog {
    let names = [
        "search_policies",
        "read_policy",
        "update_policy",
        "delete_record",
        "send_email",
    ];
    let risks = [
        RiskTier::Read,
        RiskTier::Write,
        RiskTier::Destructive,
        RiskTier::Admin,
        RiskTier::Spend,
    ];
    let capabilities = names.iter().enumerate().map(|(i, name)| {
        let family = match i {
            0 => "policies",
            3 => "records",
            _ => *rng.pick(&["policies", "records", "email"]),
        };
        let mut c = capability(name, family, &[], *rng.pick(&risks));
        if rng.next().is_multiple_of(2) {
            c.tenant = None;
        }
        c
    });
    Catalog::new(capabilities, ScopeHierarchy::default())
}

/// Listed iff possibly callable, a policy that errors never allows, forbid always wins: for
/// random principals, random catalogs and random policy sets, over every target in a small
/// domain.
#[test]
fn invariants_hold_for_random_principals_and_policy_sets() {
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let names = [
        "search_policies",
        "read_policy",
        "update_policy",
        "delete_record",
        "send_email",
        "echo",
    ];
    let roles = ["viewer", "editor", "admin", "suspended", "hr"];
    for round in 0..60 {
        let policies: Vec<&str> = (0..1 + rng.next() % 4).map(|_| *rng.pick(POOL)).collect();
        let text = policies.join("\n");
        let engine = PolicyEngine::new(random_catalog(&mut rng), "random.cedar", &text).unwrap();
        let tenants = ["tenant-a", "tenant-b"];
        let tenant = *rng.pick::<&str>(&tenants);
        let principal = person(
            "p",
            tenant,
            &[*rng.pick(&roles), *rng.pick(&roles)],
            &[
                "policies:read",
                "policies:write",
                "records:delete",
                "email:send",
            ],
        );
        for name in names {
            let mut allowed_somewhere = false;
            for tenant in ["tenant-a", "tenant-b"] {
                for amount in [1, 50, 500] {
                    let a = args(json!({"tenant": tenant, "amount": amount, "id": "X"}));
                    let decision = engine.authorize(&principal, &call(name, &a));
                    let permitted = !matches!(decision, Decision::Deny { .. });
                    allowed_somewhere |= permitted;
                    // `echo` is unconfigured: it declares no arguments, so no policy sees one.
                    let sees_amount = name != "echo";
                    if permitted
                        && sees_amount
                        && amount >= 50
                        && text.contains("4611686018427387904")
                    {
                        // amount * 2^62 overflows from 2 up: that policy errors, so never allow.
                        panic!("round {round}: an erroring policy set allowed {name}: {text}");
                    }
                    if sees_amount && amount > 100 && text.contains("amount > 100") {
                        assert!(!permitted, "round {round}: forbid lost for {name}: {text}");
                    }
                }
            }
            let visible = engine.visible(&principal, CapabilityKind::Tool, name);
            assert!(
                visible || !allowed_somewhere,
                "round {round}: {name} is callable but hidden: {text} {principal:?}"
            );
        }
    }
}

#[test]
fn list_decisions_are_shared_only_by_principals_the_policies_cannot_tell_apart() {
    let by_name = "@id(\"alice-only\")\npermit (principal == User::\"alice\", action == Action::\"tool:read_policy\", resource);\n";
    let engine = PolicyEngine::new(catalog(), "p.cedar", by_name).unwrap();
    let alice = person("alice", "tenant-a", &["viewer"], &[]);
    let bob = person("bob", "tenant-a", &["viewer"], &[]);
    assert!(engine.visible(&alice, CapabilityKind::Tool, "read_policy"));
    assert!(!engine.visible(&bob, CapabilityKind::Tool, "read_policy"));
    let by_scope = "@id(\"scoped\")\npermit (principal, action == Action::\"tool:read_policy\", resource) when { principal.scopes.contains(\"policies:read\") };\n";
    let engine = PolicyEngine::new(catalog(), "p.cedar", by_scope).unwrap();
    let with = person("a", "tenant-a", &[], &["policies:read"]);
    let without = person("a", "tenant-a", &[], &[]);
    assert!(engine.visible(&with, CapabilityKind::Tool, "read_policy"));
    assert!(!engine.visible(&without, CapabilityKind::Tool, "read_policy"));
}

#[test]
fn a_forbid_on_the_object_hides_it_and_a_forbid_on_the_arguments_is_a_visible_denial() {
    let policies = format!(
        "{POLICIES}\n@id(\"confidential\")\nforbid (principal, action, resource) when {{ resource has tenant && resource.tenant == \"tenant-secret\" }};\n"
    );
    let engine = PolicyEngine::new(catalog(), "p.cedar", &policies).unwrap();
    let admin = person("admin-a", "tenant-a", &["admin"], &["policies:read"]);
    let secret = args(json!({"tenant": "tenant-secret", "id": "X"}));
    let decision = engine.authorize(&admin, &call("read_policy", &secret));
    assert!(
        matches!(
            decision,
            Decision::Deny {
                visibility: Visibility::Hidden,
                ..
            }
        ),
        "{decision:?}"
    );
    let editor = person("editor-a", "tenant-a", &["editor"], &["policies:write"]);
    let big = args(json!({"tenant": "tenant-a", "amount": 5000}));
    let decision = engine.authorize(&editor, &call("update_policy", &big));
    assert!(matches!(
        decision,
        Decision::Deny {
            visibility: Visibility::Visible,
            ..
        }
    ));
}

#[test]
fn an_upstream_hint_can_raise_a_risk_tier_but_never_lower_it() {
    let engine = engine();
    let anyone = person("user-42", "tenant-a", &[], &[]);
    let none = Map::new();
    let hinted = |hint| Call {
        risk_hint: hint,
        ..call("echo", &none)
    };
    assert!(matches!(
        engine.authorize(&anyone, &hinted(None)),
        Decision::Allow(_)
    ));
    let destructive = engine.authorize(&anyone, &hinted(Some(RiskTier::Destructive)));
    assert!(
        matches!(destructive, Decision::AskApproval(_)),
        "{destructive:?}"
    );
    let admin = person("admin-a", "tenant-a", &["admin"], &["records:delete"]);
    let a = args(json!({"tenant": "tenant-a", "id": "R-1"}));
    let lowered = Call {
        risk_hint: Some(RiskTier::Read),
        ..call("delete_record", &a)
    };
    let decision = engine.authorize(&admin, &lowered);
    assert!(
        matches!(decision, Decision::AskApproval(_)),
        "a read hint lowered nothing: {decision:?}"
    );
}

#[test]
fn remembered_verdicts_follow_everything_a_policy_can_read() {
    let policies = "@id(\"editors\")\npermit (principal in Role::\"editor\", action in Action::\"family:policies\", resource)\nwhen { resource has tenant && resource.tenant == \"tenant-a\" };\n";
    let engine = PolicyEngine::new(catalog(), "p.cedar", policies).unwrap();
    let editor = person("editor-a", "tenant-a", &["editor"], &["policies:read"]);
    let viewer = person("user-42", "tenant-a", &["viewer"], &["policies:read"]);
    let own = args(json!({"tenant": "tenant-a", "id": "POL-1"}));
    let other = args(json!({"tenant": "tenant-b", "id": "POL-1"}));
    for _ in 0..3 {
        assert!(matches!(
            engine.authorize(&editor, &call("read_policy", &own)),
            Decision::Allow(_)
        ));
        assert!(matches!(
            engine.authorize(&viewer, &call("read_policy", &own)),
            Decision::Deny { .. }
        ));
        let crossing = engine.authorize(&editor, &call("read_policy", &other));
        assert!(matches!(crossing, Decision::Deny { .. }), "{crossing:?}");
    }
    // Arguments are part of what is remembered: the forbid on a big amount still bites.
    let engine = self::engine();
    let editor = person("editor-a", "tenant-a", &["editor"], &["policies:write"]);
    let small = args(json!({"tenant": "tenant-a", "amount": 5}));
    let big = args(json!({"tenant": "tenant-a", "amount": 5000}));
    for _ in 0..3 {
        assert!(matches!(
            engine.authorize(&editor, &call("update_policy", &small)),
            Decision::Allow(_)
        ));
        assert!(matches!(
            engine.authorize(&editor, &call("update_policy", &big)),
            Decision::Deny { .. }
        ));
    }
}

// See: issue 14. `User :: "user-43"` is valid Cedar; the verdict cache read the text, found no
// `User::`, left the subject out of its key, and user-42's allow answered for user-43.
#[test]
fn a_policy_naming_a_subject_in_any_spelling_keeps_callers_apart_in_the_caches() {
    let spellings = [
        r#"forbid (principal == User :: "user-43", action, resource);"#,
        r#"forbid (principal, action, resource) when { principal["subject"] == "user-43" };"#,
        r#"forbid (principal, action == Action::"tool\u{3a}read_policy", resource) when { principal == User::"user-43" };"#,
    ];
    let permit =
        r#"permit (principal in Role::"viewer", action in Action::"family:policies", resource);"#;
    let a = args(json!({"tenant": "tenant-a", "id": "P-1"}));
    for forbid in spellings {
        let text = format!("{permit}\n{forbid}\n");
        let engine = PolicyEngine::new(catalog(), "p.cedar", &text).unwrap();
        let user42 = person("user-42", "tenant-a", &["viewer"], &["policies:read"]);
        let user43 = person("user-43", "tenant-a", &["viewer"], &["policies:read"]);
        for _ in 0..2 {
            let first = engine.authorize(&user42, &call("read_policy", &a));
            assert!(matches!(first, Decision::Allow(_)), "{forbid}: {first:?}");
            let second = engine.authorize(&user43, &call("read_policy", &a));
            assert!(
                matches!(second, Decision::Deny { .. }),
                "{forbid}: {second:?}"
            );
            assert!(
                engine.visible(&user42, CapabilityKind::Tool, "read_policy"),
                "{forbid}"
            );
            assert!(
                !engine.visible(&user43, CapabilityKind::Tool, "read_policy"),
                "{forbid}"
            );
        }
    }
}

#[test]
fn an_out_of_band_policy_asks_on_the_page_whatever_the_tier_and_misspelt_approvals_fail() {
    let text = r#"@approval("out_of_band")
permit (principal in Role::"viewer", action == Action::"tool:read_policy", resource);
"#;
    let engine = PolicyEngine::new(catalog(), "p.cedar", text).unwrap();
    let viewer = person("user-42", "tenant-a", &["viewer"], &["policies:read"]);
    let a = args(json!({"tenant": "tenant-a", "id": "P-1"}));
    match engine.authorize(&viewer, &call("read_policy", &a)) {
        Decision::AskApproval(pending) => {
            assert!(pending.out_of_band());
            assert_eq!(pending.tier(), RiskTier::Read);
        }
        other => panic!("{other:?}"),
    }
    let typo = r#"@approval("requird")
permit (principal, action, resource);
"#;
    let error = PolicyEngine::new(catalog(), "p.cedar", typo).unwrap_err();
    assert!(
        error.to_string().contains(r#"@approval("requird")"#),
        "{error}"
    );
}

/// A list decision shared by a class of capabilities (same kind, family, tier, object and
/// tenant, no policy naming any of them) is the decision each would get on its own: the same
/// policies with the sharing turned off (a policy that could read a capability's name turns it
/// off) answer identically, for random catalogs and callers.
#[test]
fn list_decisions_shared_by_a_class_equal_decisions_made_one_by_one() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut roll = |sides: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % sides
    };
    let families = ["a", "b", "c"];
    let tiers = [RiskTier::Read, RiskTier::Write, RiskTier::Destructive];
    for round in 0..20 {
        let mut capabilities = Vec::new();
        for index in 0..30 {
            let mut tool = capability(
                &format!("t{index}"),
                families[roll(3) as usize],
                &[],
                tiers[roll(3) as usize],
            );
            if roll(2) == 0 {
                tool.object = None;
            }
            if roll(2) == 0 {
                tool.tenant = None;
            }
            capabilities.push(tool);
        }
        let policies = format!(
            "@id(\"readers\")\npermit (principal in Role::\"reader\", action in Action::\"family:{}\", resource) when {{ resource.risk == \"read\" }};\n\
             @id(\"writers\")\npermit (principal in Role::\"writer\", action in [Action::\"family:{}\", Action::\"tool\"], resource);\n\
             @id(\"one\")\npermit (principal in Role::\"special\", action == Action::\"tool:t{}\", resource);\n\
             @id(\"tenants\")\nforbid (principal, action, resource) when {{ resource has tenant && principal has tenant && resource.tenant != principal.tenant }};\n\
             @id(\"tiers\")\nforbid (principal in Role::\"careful\", action, resource) when {{ resource.risk == \"destructive\" }};\n",
            families[roll(3) as usize],
            families[roll(3) as usize],
            roll(30),
        );
        let catalog = Catalog::new(capabilities, ScopeHierarchy::default());
        let shared = PolicyEngine::new(catalog.clone(), "shared.cedar", &policies).unwrap();
        // The word turns sharing off: each capability is evaluated on its own.
        let alone = PolicyEngine::new(
            catalog,
            "alone.cedar",
            &format!("// capability\n{policies}"),
        )
        .unwrap();
        let mut names: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
        names.extend((0..5).map(|i| format!("unconfigured_{i}")));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let roles = ["reader", "writer", "special", "careful"];
        for caller in 0..8 {
            let principal = Principal {
                subject: format!("u{round}-{caller}"),
                issuer: "https://issuer.example".into(),
                tenant: (roll(2) == 0).then(|| "tenant-a".to_owned()),
                roles: roles
                    .iter()
                    .filter(|_| roll(2) == 0)
                    .map(|r| (*r).to_owned())
                    .collect(),
                scopes: Vec::new(),
                client_id: None,
            };
            assert_eq!(
                shared.visible_all(&principal, CapabilityKind::Tool, &names),
                alone.visible_all(&principal, CapabilityKind::Tool, &names),
                "round {round}, {principal:?}\n{policies}"
            );
        }
    }
}

// See: issue 17. Policies read how a call would reach its upstream (`context.credential`) and
// whether the caller connected it (`context.connected`); equal calls with another credential
// are decided anew, never answered from the cache of the first.
#[test]
fn policies_read_the_upstream_credential_and_the_cache_keeps_credentials_apart() {
    let text = r#"
permit (principal in Role::"viewer", action in Action::"family:policies", resource);
forbid (principal, action, resource)
when { context.credential == "user-oauth" && principal has tenant && principal.tenant == "no-delegation" };
"#;
    let engine = PolicyEngine::new(catalog(), "p.cedar", text).unwrap();
    assert!(!engine.reads_connected());
    let a = args(json!({"tenant": "no-delegation", "id": "P-1"}));
    let strict = person("user-1", "no-delegation", &["viewer"], &["policies:read"]);
    let open = person("user-2", "tenant-a", &["viewer"], &["policies:read"]);
    let b = args(json!({"tenant": "tenant-a", "id": "P-2"}));
    let with = |kind: &'static str| Call {
        credential: portcullis_policy::Credential {
            kind,
            connected: true,
        },
        ..call("read_policy", &a)
    };
    let theirs = |kind: &'static str| Call {
        credential: portcullis_policy::Credential {
            kind,
            connected: true,
        },
        ..call("read_policy", &b)
    };
    for _ in 0..2 {
        assert!(matches!(
            engine.authorize(&strict, &with("token-exchange")),
            Decision::Allow(_)
        ));
        assert!(matches!(
            engine.authorize(&strict, &with("user-oauth")),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            engine.authorize(&strict, &with("gateway")),
            Decision::Allow(_)
        ));
        assert!(matches!(
            engine.authorize(&open, &theirs("user-oauth")),
            Decision::Allow(_)
        ));
    }

    let connected = r#"
permit (principal in Role::"viewer", action in Action::"family:policies", resource)
when { context.credential != "user-oauth" || context.connected };
"#;
    let engine = PolicyEngine::new(catalog(), "p.cedar", connected).unwrap();
    assert!(engine.reads_connected());
    let as_connected = |connected| Call {
        credential: portcullis_policy::Credential {
            kind: "user-oauth",
            connected,
        },
        ..call("read_policy", &b)
    };
    for _ in 0..2 {
        assert!(matches!(
            engine.authorize(&open, &as_connected(true)),
            Decision::Allow(_)
        ));
        assert!(matches!(
            engine.authorize(&open, &as_connected(false)),
            Decision::Deny { .. }
        ));
    }
}
