/*!
JSON text exactly as Go's `encoding/json.Marshal` writes it, for finished.json. serde_json differs
from Go in ways a consumer comparing bytes can see: Go decodes every metadata number into a
float64 and prints it back in its own shortest form (`1`, not `1.0`; `1e+21`, not `1e21`), sorts
map keys, and escapes `<`, `>`, `&`, U+2028 and U+2029.

This module only encodes; it never decides what goes into the document.
*/

use serde_json::Value;

/// Appends `v` to `out` as Go would marshal the equivalent `interface{}` value.
pub fn encode_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Go decodes metadata numbers as float64, so integers beyond 2^53 lose precision
        // exactly as they do upstream.
        Value::Number(n) => out.push_str(&format_float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => encode_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted explicitly: serde_json's map keeps insertion order when another crate in
            // the build enables `preserve_order`.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            encode_object(keys.into_iter().map(|k| (k.as_str(), &map[k])), out);
        }
    }
}

/// Appends a JSON object with the given members, in the given order.
pub fn encode_object<'a, I>(members: I, out: &mut String)
where
    I: IntoIterator<Item = (&'a str, &'a Value)>,
{
    out.push('{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_str(k, out);
        out.push(':');
        encode_value(v, out);
    }
    out.push('}');
}

/// Go's float64 encoding: positional notation between 1e-6 and 1e21, exponent notation
/// outside it with at least two exponent digits for positive exponents (`1e+21`) and none
/// padded for negative ones (`1e-7`). Both use the shortest digits that round-trip.
pub fn format_float(f: f64) -> String {
    if !f.is_finite() {
        // Go refuses to marshal these; JSON cannot hold them and serde_json never yields them.
        return "null".to_string();
    }
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format!("{f}");
    }
    let exp = format!("{f:e}");
    match exp.split_once('e') {
        Some((mantissa, e)) if !e.starts_with('-') => {
            let digits = e.trim_start_matches('+');
            if digits.len() < 2 {
                format!("{mantissa}e+0{digits}")
            } else {
                format!("{mantissa}e+{digits}")
            }
        }
        _ => exp,
    }
}

/// Go's string encoding with HTML escaping on (the `json.Marshal` default).
pub fn encode_str(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u32 as u8;
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: Value) -> String {
        let mut s = String::new();
        encode_value(&v, &mut s);
        s
    }

    #[test]
    fn floats_print_as_go_does() {
        let cases = [
            (1.0, "1"),
            (1.5, "1.5"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-10, "1.25e-10"),
            (-2.5e22, "-2.5e+22"),
            (12345678901234567890.0, "12345678901234567000"),
            (0.1, "0.1"),
        ];
        for (f, want) in cases {
            assert_eq!(format_float(f), want, "{f}");
        }
    }

    #[test]
    fn integers_are_reencoded_as_floats() {
        let v: Value = serde_json::from_str(r#"[1, 2.0, 12345678901234567890, -3]"#).unwrap();
        assert_eq!(enc(v), "[1,2,12345678901234567000,-3]");
    }

    #[test]
    fn strings_escape_like_go() {
        let v = Value::from("a<b>&\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{2028}\u{2029}é😀");
        assert_eq!(
            enc(v),
            r#""a\u003cb\u003e\u0026\"\\\n\r\t\b\f\u0001\u001f\u2028\u2029é😀""#
        );
    }

    #[test]
    fn objects_sort_keys_and_nest() {
        let v: Value =
            serde_json::from_str(r#"{"b":{"z":null,"a":[true,false]},"a":"x","B":1}"#).unwrap();
        assert_eq!(enc(v), r#"{"B":1,"a":"x","b":{"a":[true,false],"z":null}}"#);
    }
}
