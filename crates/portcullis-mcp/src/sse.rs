//! Server-sent events as streamable HTTP uses them: each event's `data` is one JSON-RPC message.
//! Also the header encodings SEP-2243 defines (`Mcp-Name`, `Mcp-Param-*`).

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

/// Reads events out of a byte stream as it arrives. Each byte is looked at once however the
/// stream is cut: an event of many megabytes arriving a few kilobytes at a time used to be
/// searched from its start on every arrival (seconds of CPU for one hostile event).
#[derive(Default)]
pub(crate) struct EventReader {
    buffer: Vec<u8>,
    /// Where the next event begins.
    start: usize,
    /// How far the search for the end of that event has gone.
    searched: usize,
    /// Bytes looked at in all (tests).
    #[cfg(test)]
    examined: usize,
}

impl EventReader {
    /// Add bytes that arrived.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        // What was read is let go once it is most of the buffer: moved at most once more.
        if self.start > 0 && self.start >= self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.searched -= self.start;
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// How many bytes wait for the end of their event.
    pub(crate) fn pending(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The data of the next complete event that has some; `None` until one has arrived.
    pub(crate) fn next_data(&mut self) -> Option<Vec<u8>> {
        loop {
            let (end, next) = self.end_of_event()?;
            let data = event_data(&self.buffer[self.start..end]);
            self.start = next;
            self.searched = next;
            if let Some(data) = data {
                return Some(data);
            }
        }
    }

    /// Where the event that begins at `start` ends (a blank line: `\n\n` or `\r\n\r\n`) and
    /// where the one after it begins; the search goes on from where the last one stopped.
    fn end_of_event(&mut self) -> Option<(usize, usize)> {
        let from = self.searched.max(self.start);
        #[cfg(test)]
        {
            self.examined += self.buffer.len() - from;
        }
        let buffer = &self.buffer;
        for (offset, byte) in buffer[from..].iter().enumerate() {
            if *byte != b'\n' {
                continue;
            }
            let at = from + offset;
            if at > self.start && buffer[at - 1] == b'\n' {
                return Some((at - 1, at + 1));
            }
            if at >= self.start + 3 && &buffer[at - 3..at] == b"\r\n\r" {
                return Some((at - 3, at + 1));
            }
        }
        self.searched = buffer.len();
        None
    }
}

/// The joined `data:` lines of one event, if it has any content.
fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    (!data.iter().all(u8::is_ascii_whitespace)).then_some(data)
}

/// A header value carrying `text`, base64-wrapped (`=?base64?...?=`) when it is not plain
/// visible ASCII without surrounding space, or could be mistaken for a wrapped value.
pub fn header_text(text: &str) -> Option<HeaderValue> {
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && text.trim() == text
        && !(text.starts_with("=?base64?") && text.ends_with("?="));
    if plain {
        HeaderValue::from_str(text).ok()
    } else {
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
        HeaderValue::from_str(&format!("=?base64?{encoded}?=")).ok()
    }
}

/// The text a header value carries, unwrapping base64 (`None` if it is not valid).
pub fn header_value_text(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(text.to_owned()),
    }
}

/// The `Mcp-Param-<Name>` headers a tool's input schema asks for (`x-mcp-header` on a
/// property), with the values `arguments` has at those properties: what a client must send.
pub fn param_headers(
    schema: &Value,
    arguments: Option<&Map<String, Value>>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    collect(
        schema,
        arguments.map(|a| a as &Map<String, Value>),
        &mut headers,
    );
    headers
}

fn collect(
    schema: &Value,
    arguments: Option<&Map<String, Value>>,
    out: &mut Vec<(HeaderName, HeaderValue)>,
) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, property) in properties {
        let value = arguments.and_then(|arguments| arguments.get(name));
        if let Some(suffix) = property.get("x-mcp-header").and_then(Value::as_str) {
            let text = match value {
                Some(Value::String(text)) => Some(text.clone()),
                Some(Value::Number(number)) => Some(number.to_string()),
                Some(Value::Bool(flag)) => Some(flag.to_string()),
                _ => None,
            };
            let name = HeaderName::from_bytes(
                format!("mcp-param-{suffix}")
                    .to_ascii_lowercase()
                    .as_bytes(),
            );
            if let (Some(text), Ok(name)) = (text, name)
                && let Some(value) = header_text(&text)
            {
                out.push((name, value));
            }
        }
        if let Some(Value::Object(nested)) = value {
            collect(property, Some(nested), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_of_either_kind_and_priming_events_are_skipped() {
        let mut reader = EventReader::default();
        reader.push(b"data: \nid: 0\nretry: 3000\n\ndata: a\n\ndata: b\r\n\r\ndata: par");
        assert_eq!(reader.next_data().as_deref(), Some(&b"a"[..]));
        assert_eq!(reader.next_data().as_deref(), Some(&b"b"[..]));
        assert_eq!(reader.next_data(), None);
        reader.push(b"tial\n\n");
        assert_eq!(reader.next_data().as_deref(), Some(&b"partial"[..]));
        reader.push(b"id: 1\ndata: {\"a\":\ndata: 1}\n\n: keep-alive\n\n");
        assert_eq!(reader.next_data().as_deref(), Some(&b"{\"a\":\n1}"[..]));
        assert_eq!(reader.next_data(), None);
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn events_read_the_same_however_the_stream_is_cut() {
        let stream: &[u8] = b"data: \nid: 0\n\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\nid: 2\ndata: x\ndata: y\n\n\n\ndata: z\r\n\r\n";
        let expected: Vec<&[u8]> = vec![b"{\"a\":1}", b"x\ny", b"z"];
        for cut in 1..stream.len() {
            let mut reader = EventReader::default();
            let mut seen = Vec::new();
            for chunk in stream.chunks(cut) {
                reader.push(chunk);
                while let Some(data) = reader.next_data() {
                    seen.push(data);
                }
            }
            assert_eq!(seen, expected, "cut every {cut} bytes");
            assert_eq!(reader.pending(), 0);
        }
    }

    // SECURITY: an upstream's 15 MiB event sent a little at a time cost 14 s of CPU: each
    // arrival searched the event from its start again.
    #[test]
    fn a_large_event_arriving_in_small_pieces_is_searched_once() {
        let mut reader = EventReader::default();
        let piece = [b'x'; 4096];
        reader.push(b"data: ");
        for _ in 0..4096 {
            reader.push(&piece);
            assert_eq!(reader.next_data(), None);
        }
        reader.push(b"\n\n");
        assert_eq!(reader.next_data().map(|data| data.len()), Some(4096 * 4096));
        // Each byte once (searched from its start on each arrival: 8,000 times as many).
        assert!(
            reader.examined <= 4096 * 4096 + 16,
            "{} bytes looked at",
            reader.examined
        );
    }

    #[test]
    fn header_text_wraps_what_is_not_plain_ascii_and_reads_back() {
        assert_eq!(header_text("eu-west").unwrap(), "eu-west");
        let wrapped = header_text("été").unwrap();
        assert_eq!(wrapped, "=?base64?w6l0w6k=?=");
        assert_eq!(header_value_text(&wrapped).as_deref(), Some("été"));
        let sentinel = header_text("=?base64?x?=").unwrap();
        assert_eq!(
            header_value_text(&sentinel).as_deref(),
            Some("=?base64?x?=")
        );
    }

    #[test]
    fn param_headers_follow_the_annotated_property_paths() {
        let schema = serde_json::json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "options": {"type": "object", "properties": {"tier": {"type": "integer", "x-mcp-header": "Tier"}}},
            "query": {"type": "string"},
        }});
        let arguments =
            serde_json::json!({"region": "us-west1", "options": {"tier": 3}, "query": "x"});
        let headers = param_headers(&schema, arguments.as_object());
        let mut names: Vec<String> = headers
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
            .collect();
        names.sort();
        assert_eq!(names, ["mcp-param-region=us-west1", "mcp-param-tier=3"]);
        assert!(param_headers(&schema, None).is_empty());
    }
}
