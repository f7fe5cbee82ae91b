//! Event names: snake_case of the type name, and JSON string escaping of keys and names.

/// `StateDivergence` -> `state_divergence`, `HTTPError` -> `http_error`, `Rpc2Failed` -> `rpc2_failed`.
pub(crate) fn snake_case(ident: &str) -> String {
    let ident = ident.strip_prefix("r#").unwrap_or(ident);
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::with_capacity(ident.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let starts_word = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                // The last capital of an acronym starts the next word: `HTTPError` -> `http_error`.
                Some(p) if p.is_uppercase() => next.is_some_and(char::is_lowercase),
                Some(_) => false,
            };
            if starts_word {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Escapes `s` as the inside of a JSON string (without the quotes), exactly as the runtime does.
pub(crate) fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Control characters, and the separators other languages' line splitters break on.
            c if (c as u32) < 0x20 || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_splits_words_acronyms_and_strips_raw_prefix() {
        assert_eq!(snake_case("StateDivergence"), "state_divergence");
        assert_eq!(snake_case("HTTPError"), "http_error");
        assert_eq!(snake_case("Rpc2Failed"), "rpc2_failed");
        assert_eq!(snake_case("r#Match"), "match");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("A"), "a");
    }

    #[test]
    fn json_escape_escapes_quotes_backslashes_and_controls() {
        assert_eq!(json_escape("a\"b\\c\nd\u{1}"), "a\\\"b\\\\c\\nd\\u0001");
        assert_eq!(json_escape("ünïcode"), "ünïcode");
        assert_eq!(json_escape("a\u{2028}b\u{2029}c\u{85}"), "a\\u2028b\\u2029c\\u0085");
    }
}
