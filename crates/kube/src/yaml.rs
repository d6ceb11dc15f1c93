//! A small YAML writer for the manifests: block style, keys in the order of the JSON
//! values (sorted), strings plain where YAML cannot read them as anything else and
//! double-quoted (JSON escapes, which YAML shares) otherwise, multi-line text as literal
//! blocks. No external YAML crate: the output must be byte-for-byte stable.

use serde_json::Value;

/// One document, without the `---` separator.
pub fn document(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => seq(a, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(k));
        out.push(':');
        value(v, indent, out);
    }
}

fn seq(a: &[Value], indent: usize, out: &mut String) {
    for v in a {
        let mut item = String::new();
        match v {
            Value::Object(m) if !m.is_empty() => map(m, indent + 2, &mut item),
            Value::Array(a) if !a.is_empty() => seq(a, indent + 2, &mut item),
            other => {
                item.push_str(&" ".repeat(indent + 2));
                item.push_str(&scalar(other));
                item.push('\n');
            }
        }
        // the item's first line starts after "- " instead of two more spaces
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        out.push_str(&item[indent + 2..]);
    }
}

/// Writes what follows a key's colon: the value on the same line, or a block below it.
fn value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            map(m, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            seq(a, indent + 2, out);
        }
        Value::String(s) if literal_block(s) => {
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            for line in s.lines() {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// Whether `s` reads back the same as a literal block: several lines, at most one final
/// newline, no carriage return, and a first line that fixes the indentation.
fn literal_block(s: &str) -> bool {
    s.contains('\n')
        && !s.ends_with("\n\n")
        && !s.contains('\r')
        && !s.starts_with([' ', '\t', '\n'])
        && s.lines().all(|l| !l.ends_with([' ', '\t']))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// A string plain when it is a name or path YAML reads as a string; quoted otherwise.
fn string(s: &str) -> String {
    const WORDS: [&str; 12] = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "nan", "inf", "~",
    ];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_yaml_and_quotes_what_would_read_as_another_type() {
        let v = json!({
            "kind": "Pod",
            "labels": {"a": "yes", "b": "250m", "c": "x: y"},
            "list": [{"name": "web", "port": 8080}, "plain", ["inner"]],
            "empty": {},
            "text": "line one\n  two\n",
        });
        let expected = "empty: {}\nkind: Pod\nlabels:\n  a: \"yes\"\n  b: \"250m\"\n  \
                        c: \"x: y\"\nlist:\n  - name: web\n    port: 8080\n  - plain\n  - - inner\n\
                        text: |\n  line one\n    two\n";
        assert_eq!(document(&v), expected);
    }

    #[test]
    fn text_that_a_literal_block_would_change_is_quoted() {
        let v = json!({"a": " lead\nx", "b": "trail \nx", "c": "x\n\n"});
        assert_eq!(
            document(&v),
            "a: \" lead\\nx\"\nb: \"trail \\nx\"\nc: \"x\\n\\n\"\n"
        );
    }
}
