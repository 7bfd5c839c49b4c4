use serde_json::{Value, json};

use crate::support::{Client, TestKey, structured, workspace};

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_viewer_searches_only_their_tenants_internal_documents() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let viewer = key.assert("user-42", "tenant-a", &["viewer"]);
    let response = client
        .call(&viewer, "search_policies", json!({"query": ""}))
        .await;
    let policies = &structured(&response)["policies"];
    assert_eq!(ids(policies, "id"), ["POL-A1", "POL-A3"]);
    assert!(
        policies
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["tenant"] == "tenant-a" && p["classification"] == "internal")
    );
    // "Annual leave" exists in both tenants; only tenant-a's comes back.
    let response = client
        .call(&viewer, "search_policies", json!({"query": "annual LEAVE"}))
        .await;
    assert_eq!(ids(&structured(&response)["policies"], "id"), ["POL-A1"]);
}

#[tokio::test]
async fn hr_also_sees_confidential_documents_of_their_tenant_only() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let hr = key.assert("hr-a", "tenant-a", &["hr", "viewer"]);
    let response = client
        .call(&hr, "search_policies", json!({"query": ""}))
        .await;
    assert_eq!(
        ids(&structured(&response)["policies"], "id"),
        ["POL-A1", "POL-A2", "POL-A3"]
    );
    let response = client
        .call(&hr, "read_policy", json!({"id": "POL-A2"}))
        .await;
    assert_eq!(structured(&response)["classification"], "confidential");
    // Tenant-b's confidential document stays out of reach even for tenant-a's hr.
    let response = client
        .call(&hr, "read_policy", json!({"id": "POL-B2"}))
        .await;
    assert_eq!(response["result"]["isError"], json!(true));
}

#[tokio::test]
async fn a_document_the_caller_may_not_see_reads_exactly_like_a_missing_one() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let viewer = key.assert("user-42", "tenant-a", &["viewer"]);
    let mut answers = Vec::new();
    for id in ["POL-B1", "POL-A2", "POL-NOPE"] {
        let response = client.call(&viewer, "read_policy", json!({"id": id})).await;
        answers.push(serde_json::to_vec(&response["result"]).unwrap());
    }
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[1], answers[2]);
    let response = client
        .call(&viewer, "read_policy", json!({"id": "POL-A1"}))
        .await;
    assert_eq!(structured(&response)["title"], "Annual leave");

    let mut answers = Vec::new();
    for uri in [
        "policy://tenant-b/POL-B1",
        "policy://tenant-a/POL-B1",
        "policy://tenant-a/POL-A2",
        "hr-report://tenant-a/HR-A1",
        "policy://tenant-a/POL-NOPE",
    ] {
        let response = client
            .as_caller(Some(&viewer), "resources/read", json!({"uri": uri}))
            .await;
        assert!(response.get("result").is_none(), "{response}");
        answers.push(serde_json::to_vec(&response["error"]).unwrap());
    }
    assert!(answers.iter().all(|answer| answer == &answers[4]));
}

#[tokio::test]
async fn writes_to_another_tenants_objects_answer_not_found_and_change_nothing() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let editor_a = key.assert("editor-a", "tenant-a", &["editor"]);
    let editor_b = key.assert("editor-b", "tenant-b", &["editor"]);
    for (tool, arguments) in [
        ("update_policy", json!({"id": "POL-B1", "text": "hijacked"})),
        ("close_ticket", json!({"id": "TCK-B1"})),
        ("delete_record", json!({"id": "REC-B1"})),
    ] {
        let response = client.call(&editor_a, tool, arguments).await;
        assert_eq!(response["result"]["isError"], json!(true), "{response}");
    }
    let response = client
        .call(&editor_b, "read_policy", json!({"id": "POL-B1"}))
        .await;
    assert_ne!(structured(&response)["body"], "hijacked");
    for (kind, id) in [("ticket", "TCK-B1"), ("record", "REC-B1")] {
        let response = client
            .call(
                &editor_b,
                "describe_object",
                json!({"kind": kind, "id": id}),
            )
            .await;
        assert_eq!(structured(&response)["exists"], json!(true));
    }
    let response = client
        .call(
            &editor_a,
            "update_policy",
            json!({"id": "POL-A1", "text": "28 days."}),
        )
        .await;
    assert_eq!(structured(&response)["body"], "28 days.");
}

#[tokio::test]
async fn describe_object_reveals_nothing_about_another_tenants_objects() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let viewer = key.assert("user-42", "tenant-a", &["viewer"]);
    let response = client
        .call(
            &viewer,
            "describe_object",
            json!({"kind": "policy", "id": "POL-A2"}),
        )
        .await;
    assert_eq!(
        structured(&response),
        &json!({"exists": true, "tenant": "tenant-a", "owner": "hr-a", "classification": "confidential"})
    );
    let mut answers = Vec::new();
    for (kind, id) in [
        ("policy", "POL-B1"),
        ("ticket", "TCK-B1"),
        ("record", "REC-B1"),
        ("hr-report", "HR-B1"),
        ("policy", "POL-NOPE"),
    ] {
        let response = client
            .call(&viewer, "describe_object", json!({"kind": kind, "id": id}))
            .await;
        assert_eq!(structured(&response), &json!({"exists": false}));
        answers.push(serde_json::to_vec(&response["result"]).unwrap());
    }
    assert!(answers.iter().all(|answer| answer == &answers[4]));
}

#[tokio::test]
async fn create_ticket_writes_to_the_callers_tenant_only() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let editor_a = key.assert("editor-a", "tenant-a", &["editor"]);
    let editor_b = key.assert("editor-b", "tenant-b", &["editor"]);
    let response = client
        .call(&editor_a, "create_ticket", json!({"title": "New monitor"}))
        .await;
    let ticket = structured(&response).clone();
    assert_eq!(ticket["tenant"], "tenant-a");
    assert_eq!(ticket["owner"], "editor-a");
    assert_eq!(ticket["status"], "open");
    let id = ticket["id"].as_str().unwrap();
    let seen_by = |client_view: &Value| structured(client_view).clone();
    let from_a = client
        .call(
            &editor_a,
            "describe_object",
            json!({"kind": "ticket", "id": id}),
        )
        .await;
    assert_eq!(
        seen_by(&from_a),
        json!({"exists": true, "tenant": "tenant-a", "owner": "editor-a"})
    );
    let from_b = client
        .call(
            &editor_b,
            "describe_object",
            json!({"kind": "ticket", "id": id}),
        )
        .await;
    assert_eq!(seen_by(&from_b), json!({"exists": false}));
    let response = client
        .call(&editor_b, "close_ticket", json!({"id": id}))
        .await;
    assert_eq!(response["result"]["isError"], json!(true));
    let response = client
        .call(&editor_a, "close_ticket", json!({"id": id}))
        .await;
    assert_eq!(structured(&response)["status"], "closed");
}

#[tokio::test]
async fn resources_list_shows_only_what_the_caller_may_read() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let viewer = key.assert("user-42", "tenant-a", &["viewer"]);
    let hr = key.assert("hr-a", "tenant-a", &["hr"]);
    let response = client
        .as_caller(Some(&viewer), "resources/list", json!({}))
        .await;
    assert_eq!(
        ids(&response["result"]["resources"], "uri"),
        ["policy://tenant-a/POL-A1", "policy://tenant-a/POL-A3"]
    );
    let response = client
        .as_caller(Some(&hr), "resources/list", json!({}))
        .await;
    assert_eq!(
        ids(&response["result"]["resources"], "uri"),
        [
            "policy://tenant-a/POL-A1",
            "policy://tenant-a/POL-A2",
            "policy://tenant-a/POL-A3",
            "hr-report://tenant-a/HR-A1",
            "hr-report://tenant-a/HR-A2",
        ]
    );
    let response = client
        .as_caller(
            Some(&hr),
            "resources/read",
            json!({"uri": "hr-report://tenant-a/HR-A1"}),
        )
        .await;
    let text = response["result"]["contents"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("# Performance review: user-42"), "{text}");
    let response = client
        .as_caller(Some(&hr), "resources/templates/list", json!({}))
        .await;
    assert_eq!(
        ids(&response["result"]["resourceTemplates"], "uriTemplate"),
        ["policy://{tenant}/{id}", "hr-report://{tenant}/{id}"]
    );
}

#[tokio::test]
async fn the_tool_list_names_every_tool_of_the_scenario() {
    let key = TestKey::generate("gw-1");
    let mut client = Client::connect(workspace(&key)).await;
    let viewer = key.assert("user-42", "tenant-a", &["viewer"]);
    let response = client
        .as_caller(Some(&viewer), "tools/list", json!({}))
        .await;
    assert_eq!(
        ids(&response["result"]["tools"], "name"),
        [
            "search_policies",
            "read_policy",
            "update_policy",
            "create_ticket",
            "close_ticket",
            "delete_record",
            "grant_access",
            "send_email",
            "describe_object",
        ]
    );
    let response = client
        .call(
            &viewer,
            "grant_access",
            json!({"subject": "user-7", "role": "editor"}),
        )
        .await;
    assert_eq!(
        structured(&response),
        &json!({"granted": {"subject": "user-7", "role": "editor"}})
    );
    let response = client
        .call(
            &viewer,
            "send_email",
            json!({"to": "a@example.test", "subject": "Hi", "body": "."}),
        )
        .await;
    assert_eq!(structured(&response), &json!({"queued": true}));
    let response = client
        .call(&viewer, "delete_record", json!({"id": "REC-A1"}))
        .await;
    assert_eq!(structured(&response), &json!({"deleted": "REC-A1"}));
    let response = client
        .call(&viewer, "delete_record", json!({"id": "REC-A1"}))
        .await;
    assert_eq!(response["result"]["isError"], json!(true));
}
