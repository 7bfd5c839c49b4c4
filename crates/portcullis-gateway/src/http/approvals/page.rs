//! The approval page's HTML: plain, escaped, no script. Every form carries a one-time token.

use crate::consent::Shown;

/// `text` safe inside HTML text and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · Portcullis</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;\
         padding:0 1rem;line-height:1.45}}.request{{border:1px solid #bbb;border-radius:6px;\
         padding:.75rem 1rem;margin:1rem 0}}.request p{{white-space:pre-wrap;overflow-wrap:anywhere;margin:.25rem 0}}\
         .meta{{color:#555;font-size:.9rem}}button{{font-size:1rem;margin-right:.5rem}}</style>\
         </head><body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title)
    )
}

/// A service connected: the person goes back to their client.
pub(super) fn connected(upstream: &str, connections: &str) -> String {
    document(
        "Connected",
        &format!(
            "<p><strong>{upstream}</strong> is connected to your account. Go back to your client and make the same call again.</p>\n<p class=\"meta\">Your connections: <a href=\"{connections}\">{connections}</a></p>",
            upstream = escape(upstream),
            connections = escape(connections),
        ),
    )
}

/// The services `subject` connected (name, since when), each with a button disconnecting it,
/// on the page at `action`.
pub(super) fn connections(
    (subject, action): (&str, &str),
    connected: &[(String, i64)],
    form_token: &str,
) -> String {
    if connected.is_empty() {
        return document(
            "Connected services",
            &format!(
                "<p>Signed in as <strong>{}</strong>. You have connected no service.</p>",
                escape(subject)
            ),
        );
    }
    let rows: String = connected
        .iter()
        .map(|(upstream, since)| {
            format!(
                "<div class=\"request\"><p><strong>{name}</strong></p>\
                 <p class=\"meta\">connected {since}</p>\
                 <form method=\"post\" action=\"{action}\">\
                 <input type=\"hidden\" name=\"form\" value=\"{token}\">\
                 <input type=\"hidden\" name=\"upstream\" value=\"{name}\">\
                 <button type=\"submit\">Disconnect {name}</button></form></div>\n",
                name = escape(upstream),
                since = portcullis_audit::rfc3339_from_millis(since.saturating_mul(1000)),
                action = escape(action),
                token = escape(form_token),
            )
        })
        .collect();
    document(
        "Connected services",
        &format!(
            "<p>Signed in as <strong>{}</strong>. The gateway keeps your tokens at these services and uses them only for your own calls to each.</p>\n{rows}",
            escape(subject)
        ),
    )
}

/// The person's requests waiting for an answer, in one form: approve some, all, or none.
/// The requests waiting for `subject`, on the page at `action`; only `selected` (the one a
/// link named) starts ticked, so following a link for one request never approves another in
/// the same click.
pub(super) fn requests(
    (subject, action): (&str, &str),
    shown: &[Shown],
    form_token: &str,
    selected: Option<&str>,
) -> String {
    if shown.is_empty() {
        return document(
            "Nothing to approve",
            &format!(
                "<p>Signed in as <strong>{subject}</strong>. There is no request waiting for \
                 your approval.</p>\n\
                 <form method=\"post\" action=\"{action}\">\n\
                 <input type=\"hidden\" name=\"form\" value=\"{token}\">\n\
                 <button type=\"submit\" name=\"decision\" value=\"sign_out\">Sign out</button>\
                 </form>",
                subject = escape(subject),
                action = escape(action),
                token = escape(form_token),
            ),
        );
    }
    let mut items = String::new();
    for request in shown {
        items.push_str(&format!(
            "<div class=\"request\"><label><input type=\"checkbox\" name=\"request\" \
             value=\"{id}\"{checked}> Include this request</label><p>{question}</p>\
             <p class=\"meta\">Reference {id} · expires in {minutes} min</p></div>\n",
            id = escape(&request.id),
            checked = if selected == Some(request.id.as_str()) {
                " checked"
            } else {
                ""
            },
            question = escape(&request.question),
            minutes = request.expires_in.div_ceil(60),
        ));
    }
    document(
        "Approve actions",
        &format!(
            "<p>Signed in as <strong>{subject}</strong>. These actions are waiting for your \
             approval. Nothing runs until you approve it; each approved action runs once, when \
             the client makes the same call again.</p>\n\
             <form method=\"post\" action=\"{action}\">\n\
             <input type=\"hidden\" name=\"form\" value=\"{token}\">\n{items}\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Approve selected</button>\
             <button type=\"submit\" name=\"decision\" value=\"decline\">Decline selected</button>\
             <button type=\"submit\" name=\"decision\" value=\"sign_out\">Sign out</button>\
             </form>",
            subject = escape(subject),
            action = escape(action),
            token = escape(form_token),
        ),
    )
}

/// A page that only says something.
pub(super) fn notice(title: &str, text: &str) -> String {
    document(title, &format!("<p>{}</p>", escape(text)))
}

/// What an answer did.
pub(super) fn answered(approved: &[String], declined: &[String], refused: &[String]) -> String {
    let list = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("<li>{}</li>", escape(id)))
            .collect::<String>()
    };
    let mut body = String::new();
    if !approved.is_empty() {
        body.push_str(&format!(
            "<p>Approved (each runs once, when the client makes the same call again):</p>\
             <ul id=\"approved\">{}</ul>",
            list(approved)
        ));
    }
    if !declined.is_empty() {
        body.push_str(&format!(
            "<p>Declined (they will not run):</p><ul id=\"declined\">{}</ul>",
            list(declined)
        ));
    }
    if !refused.is_empty() {
        body.push_str(&format!(
            "<p>Not changed (expired, already answered, or not yours):</p>\
             <ul id=\"refused\">{}</ul>",
            list(refused)
        ));
    }
    document("Done", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(id: &str) -> Shown {
        Shown {
            id: id.to_owned(),
            question: format!("Approve {id}?"),
            expires_in: 60,
        }
    }

    // See: issue 19. Every waiting request was pre-ticked: following the link for a harmless
    // call also approved a waiting `grant_access`.
    #[test]
    fn only_the_request_a_link_names_starts_ticked() {
        let page = requests(
            ("ada", "/approvals"),
            &[shown("ap-1"), shown("ap-2")],
            "t",
            Some("ap-2"),
        );
        assert_eq!(page.matches(" checked>").count(), 1, "{page}");
        assert!(page.contains("value=\"ap-2\" checked>"), "{page}");
        let page = requests(
            ("ada", "/approvals"),
            &[shown("ap-1"), shown("ap-2")],
            "t",
            None,
        );
        assert_eq!(page.matches(" checked>").count(), 0, "{page}");
    }
}
