/*!
Go's `fmt` verbs that upstream's messages print with, where Rust's own differ: `%q`.
*/

/// Go's `%q` (`strconv.Quote`) for the texts upstream quotes: paths, URLs, escapes.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_go() {
        assert_eq!(quote("/a b/\"c\"\\"), r#""/a b/\"c\"\\""#);
        assert_eq!(quote("a\nb"), r#""a\nb""#);
        assert_eq!(quote("\u{1}"), r#""\x01""#);
    }
}
