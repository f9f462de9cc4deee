//! A YAML writer for JSON values, in the block style `kubectl get -o yaml` prints: keys in
//! sorted order (whatever order the map keeps), list items at their key's indentation,
//! strings quoted only where YAML would read them as something other than a string. It
//! cannot fail, so neither can [`super::crds_yaml`].

use serde_json::{Map, Value};

const INDENT: usize = 2;

/// Appends `value` as one YAML document.
pub(super) fn write_document(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) if !map.is_empty() => write_map(out, map, 0),
        Value::Array(items) if !items.is_empty() => write_list(out, items, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in entries {
        push_indent(out, indent);
        out.push_str(&string(key));
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_map(out, m, indent + INDENT);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_list(out, items, indent);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        match item {
            // A collection item is written one level deeper, then its first line's
            // indentation becomes the item's dash: `- name: v1` over `  served: true`.
            Value::Object(_) | Value::Array(_) if !is_empty(item) => {
                let mut block = String::new();
                write_document_at(&mut block, item, indent + INDENT);
                push_indent(out, indent);
                out.push_str("- ");
                out.push_str(block.trim_start_matches(' '));
            }
            scalar => {
                push_indent(out, indent);
                out.push_str("- ");
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

fn write_document_at(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) => write_map(out, map, indent),
        Value::Array(items) => write_list(out, items, indent),
        scalar => {
            push_indent(out, indent);
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn push_indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A scalar or an empty collection, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Words YAML 1.1 or 1.2 readers take for booleans, null or special floats.
const RESERVED: [&str; 11] = [
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", ".inf", ".nan",
];

/// `s` as a plain scalar where that reads back as the same string, else double-quoted.
fn string(s: &str) -> String {
    let mut chars = s.chars();
    let starts_like_a_word = match (chars.next(), chars.next()) {
        (Some(c), _) if c.is_ascii_alphabetic() => true,
        // `.5` would read as a number.
        (Some('.'), Some(c)) => c.is_ascii_alphabetic(),
        _ => false,
    };
    let plain = starts_like_a_word
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain { s.to_string() } else { quoted(s) }
}

/// A double-quoted scalar: YAML's escapes for `"`, `\` and control characters.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(value: &Value) -> String {
        let mut out = String::new();
        write_document(&mut out, value);
        out
    }

    #[test]
    fn block_style_with_sorted_keys() {
        let value = json!({
            "spec": {"versions": [{"name": "v1", "subresources": {"status": {}}}], "names": []},
            "apiVersion": "x/v1",
        });
        assert_eq!(
            render(&value),
            "apiVersion: x/v1\nspec:\n  names: []\n  versions:\n  - name: v1\n    \
             subresources:\n      status: {}\n"
        );
        assert_eq!(render(&json!([["a"], 1])), "- - a\n- 1\n");
    }

    #[test]
    fn strings_read_back_as_strings() {
        let cases = [
            "v1",
            "yes",
            "No",
            "null",
            "1",
            "1.0",
            ".5",
            ".inf",
            "",
            "-x",
            "a b",
            "a: b",
            "#x",
            "*",
            "&a",
            "'q'",
            "\"q\"",
            "a\\b",
            "line\nbreak",
            "tab\there",
            "\u{1}",
            r#".status.conditions[?(@.type=="Programmed")].status"#,
            ".spec.hosts",
            "istio-io",
            "app.kubernetes.io/part-of",
        ];
        for s in cases {
            let text = render(&json!({ s: s, "list": [s] }));
            let back: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{s:?} as {text:?}: {e}"));
            assert_eq!(back, json!({ s: s, "list": [s] }), "{text}");
        }
        assert_eq!(string(".spec.hosts"), ".spec.hosts");
        assert_eq!(string("y"), "\"y\"");
    }
}
