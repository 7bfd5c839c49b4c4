//! One decision, and list filtering for one caller, on a catalog shaped like a real one: tools
//! in families, role-based permits, a forbid on an argument, tenant-pinned objects.
//! Run: `cargo bench -p portcullis-policy --bench decide`.

#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]
#![expect(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portcullis_policy::{
    ArgumentType, Call, Capability, CapabilityKind, Catalog, PolicyEngine, Principal, RiskTier,
    ScopeHierarchy,
};
use serde_json::json;

const FAMILIES: usize = 10;

fn engine(tools: usize) -> (PolicyEngine, Vec<String>) {
    let names: Vec<String> = (0..tools).map(|i| format!("tool_{i}")).collect();
    let capabilities = names.iter().enumerate().map(|(i, name)| Capability {
        kind: CapabilityKind::Tool,
        name: name.clone(),
        family: format!("f{}", i % FAMILIES),
        scopes: vec![format!("f{}:read", i % FAMILIES)],
        risk: if i % 3 == 0 {
            RiskTier::Write
        } else {
            RiskTier::Read
        },
        object: Some("id".into()),
        tenant: Some("tenant".into()),
        arguments: vec![("amount".into(), ArgumentType::Long)],
        resolver: None,
        consent: None,
    });
    let mut policies = String::new();
    for family in 0..FAMILIES {
        policies.push_str(&format!(
            "@id(\"readers-f{family}\")\npermit (principal in Role::\"reader-f{family}\", action in Action::\"family:f{family}\", resource) when {{ resource.risk == \"read\" }};\n\
             @id(\"writers-f{family}\")\npermit (principal in Role::\"writer-f{family}\", action in Action::\"family:f{family}\", resource);\n"
        ));
    }
    policies.push_str(
        "@id(\"limit\")\nforbid (principal, action, resource) when { context.arguments has amount && context.arguments.amount > 1000 };\n\
         @id(\"confidential\")\nforbid (principal, action, resource) when { resource has classification && resource.classification == \"confidential\" } unless { principal in Role::\"hr\" };\n",
    );
    let catalog = Catalog::new(capabilities, ScopeHierarchy::default());
    (
        PolicyEngine::new(catalog, "bench.cedar", &policies).unwrap(),
        names,
    )
}

fn principal(subject: String) -> Principal {
    Principal {
        subject,
        issuer: "https://issuer.example".into(),
        tenant: Some("tenant-a".into()),
        roles: vec!["reader-f1".into(), "writer-f2".into(), "reader-f7".into()],
        scopes: (0..FAMILIES).map(|f| format!("f{f}:read")).collect(),
        client_id: Some("bench".into()),
    }
}

fn decide(c: &mut Criterion) {
    let (engine, _) = engine(100);
    let caller = principal("user-42".into());
    let arguments = json!({"id": "DOC-1", "tenant": "tenant-a", "amount": 5});
    let arguments = arguments.as_object().unwrap();
    let call = Call {
        kind: CapabilityKind::Tool,
        name: "tool_2",
        arguments: Some(arguments),
        era: "2026-07-28",
        object: None,
        risk_hint: None,
        credential: Default::default(),
    };
    c.bench_function("authorize one call", |b| {
        b.iter(|| black_box(engine.authorize(&caller, black_box(&call))));
    });
}

fn filter(c: &mut Criterion) {
    let mut group = c.benchmark_group("filter tools/list");
    group.sample_size(20);
    for size in [10, 100, 1000, 10_000] {
        let (engine, names) = engine(size);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let caller = principal("user-42".into());
        engine.visible_all(&caller, CapabilityKind::Tool, &names);
        group.bench_function(format!("{size} tools, warm"), |b| {
            b.iter(|| black_box(engine.visible_all(&caller, CapabilityKind::Tool, &names)));
        });
        // Decisions are shared by callers the policies cannot tell apart (here: the same
        // roles), so another user of a known role set lists from the cache.
        let mut fresh = 0u64;
        group.bench_function(format!("{size} tools, new caller, known role set"), |b| {
            b.iter_batched(
                || {
                    fresh += 1;
                    principal(format!("new-{fresh}"))
                },
                |caller| black_box(engine.visible_all(&caller, CapabilityKind::Tool, &names)),
                BatchSize::SmallInput,
            );
        });
        if size <= 1000 {
            // The worst case: a role set never seen, one partial evaluation per tool.
            let mut fresh = 0u64;
            group.bench_function(format!("{size} tools, never-seen role set"), |b| {
                b.iter_batched(
                    || {
                        fresh += 1;
                        let mut caller = principal("user-42".into());
                        caller.roles.push(format!("role-{fresh}"));
                        caller
                    },
                    |caller| black_box(engine.visible_all(&caller, CapabilityKind::Tool, &names)),
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decide, filter);
criterion_main!(benches);
