//! Where a dotted key of a configuration (`upstream[1].resources`, `consent.keys`) is written,
//! so that a value refused after parsing is shown with its file and line, as the parser shows
//! an unknown key.

use toml::de::{DeTable, DeValue};

/// The line (1-based) where `key` is set in `text`, or where the deepest part of it found is.
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut at = None;
    let mut table = Some(document.get_ref());
    for segment in key.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((found, value)) =
            table.and_then(|table| table.iter().find(|(found, _)| found.get_ref() == name))
        else {
            break;
        };
        at = Some(found.span().start);
        let mut value = value;
        if let (Some(index), DeValue::Array(items)) = (index, value.get_ref()) {
            let Some(item) = items.get(index) else {
                break;
            };
            at = Some(item.span().start);
            value = item;
        }
        table = match value.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => None,
        };
    }
    at.map(|at| text[..at.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_through_tables_and_arrays_of_tables() {
        let text = "[server]\nlisten = \"x\"\n\n[[upstream]]\nname = \"a\"\n\n[[upstream]]\nname = \"b\"\nresources = [\"hr\"]\n";
        assert_eq!(line_of(text, "server.listen"), Some(2));
        assert_eq!(line_of(text, "upstream[1].resources"), Some(9));
        assert_eq!(line_of(text, "upstream[0].name"), Some(5));
        assert_eq!(line_of(text, "consent.keys"), None);
    }
}
