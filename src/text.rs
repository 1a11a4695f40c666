//! Text from a registry (titles, tags, media types, error bodies, URLs) on its way to a
//! terminal. A server can send escape sequences that clear the screen or retitle the window,
//! carriage returns that overwrite a line, and bidirectional overrides that make a name read
//! backwards; `escape` makes each of them visible instead, and everything ocidl prints that a
//! server could have shaped goes through it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// C0 controls, DEL, C1 controls, the bidirectional marks, embeddings, overrides and
/// isolates, and the line and paragraph separators: none of them belongs in a file name or a
/// line of output.
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character, and the backslash that would make the result
/// ambiguous, written as an escape: `\t`, `\n`, `\r`, `\\`, `\x1b`, `\u{202e}`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 && is_unsafe(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON document with the unsafe characters that serde_json leaves raw (DEL, C1, the
/// bidirectional ones, the separators) written as `\uXXXX`: the same JSON to a parser, and
/// harmless on a terminal. They can only stand inside strings, where the escape is valid.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_characters_are_made_visible() {
        for (raw, shown) in [
            ("trurl", "trurl"),
            ("a\tb", "a\\tb"),
            ("a\nb\r", "a\\nb\\r"),
            ("\x1b[2J", "\\x1b[2J"),
            ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
            ("del\x7f", "del\\x7f"),
            ("c1\u{9b}", "c1\\x9b"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("iso\u{2066}x\u{2069}", "iso\\u{2066}x\\u{2069}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("back\\slash", "back\\\\slash"),
            ("ünïcode ✓", "ünïcode ✓"),
        ] {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_stays_json() {
        let value = serde_json::json!({ "t": "a\u{202e}b\u{85}c\u{7f}\u{1b}" });
        let text = serde_json::to_string(&value).unwrap();
        let escaped = escape_json(&text);
        assert!(!escaped.chars().any(is_unsafe), "{escaped}");
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
    }
}
