use portcullis_e2e::{Era, HttpFixture, TestClient, TestGateway, connect};
use rmcp::model::CallToolRequestParams;

use crate::{first_text, http_upstream, stdio_upstream};

#[tokio::test]
async fn several_upstreams_are_listed_with_prefixes_and_routed_back() {
    let fixture = HttpFixture::start().await;
    let toml = format!(
        "{}{}",
        stdio_upstream("local"),
        http_upstream("remote", &fixture)
    );
    let gateway = TestGateway::spawn(&toml).await;
    for era in [Era::Sessions, Era::Stateless] {
        let client = connect(&gateway.url, era, TestClient::default()).await;
        let names: Vec<_> = client
            .list_all_tools()
            .await
            .expect("list")
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        for expected in ["local__fixture_echo", "remote__fixture_echo"] {
            assert!(names.contains(&expected.to_owned()), "{era:?}: {names:?}");
        }
        assert!(
            !names.contains(&"fixture_echo".to_owned()),
            "unprefixed name leaked: {names:?}"
        );
        for upstream in ["local", "remote"] {
            let mut params = CallToolRequestParams::new(format!("{upstream}__fixture_echo"));
            params.arguments = serde_json::json!({"text": upstream}).as_object().cloned();
            let result = client.call_tool(params).await.expect("routed call");
            assert_eq!(first_text(&result), upstream);
        }
        let prompts = client.list_all_prompts().await.expect("prompts");
        assert!(
            prompts
                .iter()
                .any(|p| p.name == "remote__test_simple_prompt"),
            "{prompts:?}"
        );
        // See: issue 19. Resource URIs carry no prefix: an upstream that listed another's URI
        // received every caller's read of it. Both upstreams here list `test://static-text`,
        // so it belongs to neither: no read goes to an upstream whose claim is disputed.
        let listed = client.list_all_resources().await.expect("resources");
        assert!(
            listed
                .iter()
                .filter(|r| r.uri == "test://static-text")
                .count()
                == 2,
            "both list it: {listed:?}"
        );
        let disputed = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(
                "test://static-text",
            ))
            .await;
        assert!(
            disputed.is_err(),
            "a URI two upstreams claim is refused: {disputed:?}"
        );
        let unclaimed = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(
                "hr://salaries/2026",
            ))
            .await;
        assert!(
            unclaimed.is_err(),
            "a URI nobody claims is not tried on each upstream"
        );
        let unknown = client
            .call_tool(CallToolRequestParams::new("nowhere__fixture_echo"))
            .await;
        assert!(unknown.is_err(), "an unroutable name is an error");
        client.cancel().await.expect("close");
    }
}
