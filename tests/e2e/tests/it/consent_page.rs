//! The approval page through the gateway, with the embedded authorization server signing the
//! person in: a session client that can open URLs is sent to the page by a URL-mode
//! elicitation and its call waits for the person's answer there; approved, it runs once.

use portcullis_e2e::{DevIssuer, Era, TestClient, TestGateway, connect_as};
use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::stdio_upstream;

/// A browser's visit to the approval page at `link`, signing in as `identity` (the embedded
/// authorization server takes a `login_hint`), then answering every waiting request.
pub(crate) async fn approve_on_page(link: &str, identity: &str, approve: bool) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = |answer: &reqwest::Response| {
        answer.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let (callback_url, browser) = sign_in_until_callback(&http, link, identity).await;
    let callback = http
        .get(&callback_url)
        .header("cookie", &browser)
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), 303);
    let cookie = first_cookie(&callback);
    let origin = link.split("/approvals").next().unwrap().to_owned();
    let page = http
        .get(format!("{origin}{}", location(&callback)))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"form\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let ids: Vec<String> = page
        .split("name=\"request\" value=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect();
    let mut form = vec![
        ("form".to_owned(), token),
        (
            "decision".to_owned(),
            if approve { "approve" } else { "decline" }.to_owned(),
        ),
    ];
    form.extend(ids.into_iter().map(|id| ("request".to_owned(), id)));
    let answered = http
        .post(format!("{origin}/approvals"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    format!("{page}\n{}", answered.text().await.unwrap())
}

/// A gateway whose public URL has the path `public_path` (its proxy strips what precedes
/// `/mcp`), with the approval page, and its issuer.
async fn page_gateway(name: &str, public_path: &str) -> (TestGateway, DevIssuer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}{public_path}", listener.local_addr().unwrap());
    let issuer = DevIssuer::start(name, &resource, &[]).await;
    let gateway = TestGateway::spawn_on(
        listener,
        &format!(
            "[auth]\npublic_url = \"{resource}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n{}",
            issuer.issuer,
            stdio_upstream("fixture")
        ),
    )
    .await;
    (gateway, issuer)
}

/// A browser's HTTP client: it does not follow redirects, so each one can be looked at.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The first `Set-Cookie` of `answer`, as `name=value`.
fn first_cookie(answer: &reqwest::Response) -> String {
    answer.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A browser's sign-in on the page at `link` as `identity`, up to the authorization server's
/// redirect back: the callback URL, and the cookie the page gave the browser at the start.
async fn sign_in_until_callback(
    http: &reqwest::Client,
    link: &str,
    identity: &str,
) -> (String, String) {
    let to_sign_in = http.get(link).send().await.unwrap();
    assert_eq!(to_sign_in.status(), 303);
    let browser = first_cookie(&to_sign_in);
    let location = to_sign_in.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let to_callback = http
        .get(format!("{location}&login_hint={identity}"))
        .send()
        .await
        .unwrap();
    assert!(
        to_callback.status().is_redirection(),
        "{}",
        to_callback.status()
    );
    let callback = to_callback.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    (callback, browser)
}

// See: issue 19 (login CSRF). An attacker's own callback link (its code and state), opened in
// a victim's browser, signed the victim in as the attacker. A sign-in now finishes only in the
// browser that started it.
#[tokio::test]
async fn a_sign_in_finishes_only_in_the_browser_that_started_it() {
    let (gateway, _issuer) = page_gateway("login-csrf", "/mcp").await;
    let http = browser();
    let page = format!("{}/approvals", gateway.base);
    let (attackers, _) = sign_in_until_callback(&http, &page, "admin-a").await;
    let (_, victims_browser) = sign_in_until_callback(&http, &page, "user-42").await;
    let forced = http
        .get(&attackers)
        .header("cookie", &victims_browser)
        .send()
        .await
        .unwrap();
    assert_eq!(
        forced.status(),
        403,
        "another browser's callback is refused"
    );
    assert!(
        forced.headers().get(reqwest::header::SET_COOKIE).is_none(),
        "nobody is signed in"
    );
    let bare = http.get(&attackers).send().await.unwrap();
    assert_eq!(bare.status(), 403, "and so is one with no sign-in cookie");
}

#[tokio::test]
async fn a_url_mode_client_is_sent_to_the_page_and_its_call_waits_for_the_answer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    let issuer = DevIssuer::start("consent-page", &resource, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{resource}\"\n\n\
         [policy]\ncedar = '''\n\
         @id(\"admins-grant\")\n\
         permit (principal in Role::\"admin\", action == Action::\"tool:greet\", resource);\n'''\n\n\
         [[capability]]\ntool = \"greet\"\nrisk = \"admin\"\n\
         consent = \"Give {{name}} the keys.\"\n\n\
         [[auth.issuer]]\nissuer = \"{}\"\n\n{}",
        issuer.issuer,
        stdio_upstream("fixture")
    );
    let gateway = TestGateway::spawn_on(listener, &config).await;
    for approve in [true, false] {
        let token = issuer.auth.mint("admin-a", None).unwrap();
        let client = TestClient {
            opens_urls: true,
            approves: Some(true),
            ..TestClient::default()
        };
        let visits = client.visits.clone();
        let service = connect_as(&gateway.url, Era::Sessions, client, Some(&token)).await;
        let mut call = CallToolRequestParams::new("greet");
        call.arguments = json!({"name": "Ada"}).as_object().cloned();
        let peer = service.peer().clone();
        let pending = tokio::spawn(async move { peer.call_tool(call).await });
        let mut link = None;
        for _ in 0..100 {
            link = visits.lock().unwrap().first().cloned();
            if link.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let link = link.expect("the client was sent to the approval page");
        assert!(
            link.starts_with(&format!("{}/approvals?request=ap-", gateway.base)),
            "{link}"
        );
        let page = approve_on_page(&link, "admin-a", approve).await;
        assert!(page.contains("Give Ada the keys."), "{page}");
        let answer = pending.await.unwrap();
        if approve {
            let text = serde_json::to_string(&answer.unwrap()).unwrap();
            assert!(text.contains("Hello, Ada"), "{text}");
        } else {
            let error = format!("{:?}", answer.unwrap_err());
            assert!(
                error.contains("-31002") && error.contains("declined"),
                "{error}"
            );
        }
        service.cancel().await.unwrap();
    }
}

// See: issue 19. The page's sign-in took whatever metadata document the issuer's address
// served: another issuer's, or one sending a person's sign-in over plain http.
#[tokio::test]
async fn the_page_signs_in_only_with_metadata_of_its_own_issuer_and_https_endpoints() {
    let as_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let as_url = format!("http://{}", as_listener.local_addr().unwrap());
    let document = std::sync::Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    let served = document.clone();
    let app = axum::Router::new().route(
        "/.well-known/oauth-authorization-server",
        axum::routing::get(move || {
            let served = served.clone();
            async move { axum::Json(served.lock().unwrap().clone()) }
        }),
    );
    tokio::spawn(async move { axum::serve(as_listener, app).await });
    let config = format!(
        "[auth]\npublic_url = \"http://127.0.0.1/mcp\"\n\n\
         [[auth.issuer]]\nissuer = \"{as_url}\"\njwks_uri = \"{as_url}/jwks\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n{}",
        stdio_upstream("fixture")
    );
    let gateway = TestGateway::spawn(&config).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = || async {
        http.get(format!("{}/approvals", gateway.base))
            .header("host", "127.0.0.1")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let endpoints = |issuer: &str, authorize: &str| {
        serde_json::json!({"issuer": issuer, "authorization_endpoint": authorize,
            "token_endpoint": format!("{as_url}/token")})
    };
    *document.lock().unwrap() = endpoints("http://evil.example", &format!("{as_url}/authorize"));
    assert_eq!(page().await, 503, "another issuer's metadata is not used");
    *document.lock().unwrap() = endpoints(&as_url, "http://evil.example/authorize");
    assert_eq!(
        page().await,
        503,
        "a plain http endpoint off loopback is not used"
    );
    *document.lock().unwrap() = endpoints(&as_url, &format!("{as_url}/authorize"));
    let status = page().await;
    assert!(
        (300..400).contains(&status),
        "its own metadata: sent to sign in ({status})"
    );
}

// See: issue 19. The page offered no way to sign out. Its form now does (checked like any of
// its forms), and the sign-in is forgotten by the gateway, not only by the browser.
#[tokio::test]
async fn a_person_signed_in_on_the_page_can_sign_out() {
    let (gateway, _issuer) = page_gateway("sign-out", "/mcp").await;
    let http = browser();
    let page = format!("{}/approvals", gateway.base);
    let (callback, browser) = sign_in_until_callback(&http, &page, "user-42").await;
    let signed_in = http
        .get(&callback)
        .header("cookie", &browser)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = first_cookie(&signed_in);
    let shown = http
        .get(&page)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.contains("value=\"sign_out\""), "{shown}");
    let token = shown
        .split("name=\"form\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let out = http
        .post(&page)
        .header("cookie", &cookie)
        .header("origin", &gateway.base)
        .form(&[("form", token.as_str()), ("decision", "sign_out")])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let expired = out.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(expired.contains("Max-Age=0"), "{expired}");
    assert!(out.text().await.unwrap().contains("signed out"));
    let again = http
        .get(&page)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        303,
        "the old cookie signs nobody in: off to sign in again"
    );
}

// See: issue 19. Behind a proxy at a path prefix (public URL `…/tools/mcp`), the page's
// `redirect_uri`, `client_id`, cookies and links dropped the prefix.
#[tokio::test]
async fn the_page_keeps_the_public_urls_path_prefix() {
    let (gateway, _issuer) = page_gateway("prefix", "/tools/mcp").await;
    let origin = gateway.base.clone();
    let http = browser();
    // Review of issue 16: a link's request id is kept with the sign-in it starts; an id not of
    // the gateway's shape (any length an unauthenticated visitor likes) starts none.
    let odd = http
        .get(format!(
            "{}/approvals?request=ap-{}",
            gateway.base,
            "x".repeat(4000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 400);
    // The proxy strips `/tools`: the gateway serves the page at `/approvals`.
    let to_sign_in = http
        .get(format!(
            "{}/approvals?request=ap-AAAAAAAAAAAAAAAAAAAAAA",
            gateway.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(to_sign_in.status(), 303);
    let cookie = to_sign_in.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Path=/tools/approvals"), "{cookie}");
    let location = to_sign_in.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let url = reqwest::Url::parse(&location).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        param("redirect_uri"),
        format!("{origin}/tools/approvals/callback")
    );
    assert_eq!(
        param("client_id"),
        format!("{origin}/tools/approvals/client.json")
    );
}
