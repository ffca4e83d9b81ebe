//! Files: JSON, TOML and YAML parsed into the tree, each key with its line,
//! and `${VAR}` expanded in their strings.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::value::{Node, Origin, Value, join};

/// A file's format, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Toml,
    Yaml,
}

impl Format {
    /// The format of `path` by its extension (`.json`, `.toml`, `.yaml` or
    /// `.yml`).
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Self::Json),
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            _ => None,
        }
    }
}

/// `text`, the contents of the file at `path`, as a tree. `var` reads the
/// environment for `${VAR}`.
///
/// # Errors
/// Why the text is not valid in its format, or the first `${VAR}` that
/// names an unset variable with no default; with the line where known.
pub(crate) fn parse(
    text: &str,
    format: Format,
    path: &Path,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Node, String> {
    let (value, lines) = match format {
        Format::Json => {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            (Raw::from(value), json_lines(text))
        }
        Format::Toml => {
            let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
            (Raw::from(toml::Value::Table(table)), toml_lines(text))
        }
        Format::Yaml => {
            let mut value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
            value.apply_merge().map_err(|e| e.to_string())?;
            (Raw::try_from(value)?, yaml_lines(text))
        }
    };
    let file = Files {
        path,
        lines: &lines,
        var,
    };
    let mut at = String::new();
    file.node(value, &mut at)
}

/// A parsed value before it becomes a node: the three formats' values in
/// one shape.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Raw>),
    Table(Vec<(String, Raw)>),
}

impl From<serde_json::Value> for Raw {
    fn from(value: serde_json::Value) -> Self {
        use serde_json::Value as J;
        match value {
            J::Null => Raw::Null,
            J::Bool(b) => Raw::Bool(b),
            J::Number(n) => n
                .as_i64()
                .map_or_else(|| Raw::Float(n.as_f64().unwrap_or(f64::NAN)), Raw::Int),
            J::String(s) => Raw::Str(s),
            J::Array(items) => Raw::Array(items.into_iter().map(Raw::from).collect()),
            J::Object(map) => Raw::Table(map.into_iter().map(|(k, v)| (k, Raw::from(v))).collect()),
        }
    }
}

impl From<toml::Value> for Raw {
    fn from(value: toml::Value) -> Self {
        use toml::Value as T;
        match value {
            T::Boolean(b) => Raw::Bool(b),
            T::Integer(i) => Raw::Int(i),
            T::Float(f) => Raw::Float(f),
            T::String(s) => Raw::Str(s),
            T::Datetime(d) => Raw::Str(d.to_string()),
            T::Array(items) => Raw::Array(items.into_iter().map(Raw::from).collect()),
            T::Table(t) => Raw::Table(t.into_iter().map(|(k, v)| (k, Raw::from(v))).collect()),
        }
    }
}

impl TryFrom<serde_yaml_ng::Value> for Raw {
    type Error = String;

    fn try_from(value: serde_yaml_ng::Value) -> Result<Self, String> {
        use serde_yaml_ng::Value as Y;
        Ok(match value {
            Y::Null => Raw::Null,
            Y::Bool(b) => Raw::Bool(b),
            Y::Number(n) => match n.as_i64() {
                Some(i) => Raw::Int(i),
                None => Raw::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Y::String(s) => Raw::Str(s),
            Y::Sequence(items) => Raw::Array(
                items
                    .into_iter()
                    .map(Raw::try_from)
                    .collect::<Result<_, _>>()?,
            ),
            Y::Mapping(map) => {
                let mut table = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let key = match k {
                        Y::String(s) => s,
                        Y::Number(n) => n.to_string(),
                        Y::Bool(b) => b.to_string(),
                        other => {
                            return Err(format!("a mapping key must be a string, not {other:?}"));
                        }
                    };
                    table.push((key, Raw::try_from(v)?));
                }
                Raw::Table(table)
            }
            Y::Tagged(tagged) => Raw::try_from(tagged.value)?,
        })
    }
}

/// What turning one file's values into nodes needs.
struct Files<'a> {
    path: &'a Path,
    lines: &'a HashMap<String, usize>,
    var: &'a dyn Fn(&str) -> Option<String>,
}

impl Files<'_> {
    fn origin(&self, at: &str) -> Arc<Origin> {
        Arc::new(Origin::File {
            path: self.path.to_owned(),
            line: self.lines.get(at).copied(),
        })
    }

    fn node(&self, raw: Raw, at: &mut String) -> Result<Node, String> {
        let origin = self.origin(at);
        let value = match raw {
            Raw::Null => Value::Null,
            Raw::Bool(b) => Value::Bool(b),
            Raw::Int(i) => Value::Int(i),
            Raw::Float(f) => Value::Float(f),
            Raw::Str(s) if s.contains('$') => {
                let expanded = expand(&s, self.var).map_err(|e| format!("{at}: {e}"))?;
                if expanded == s {
                    Value::Str(s)
                } else {
                    // What came from the environment has no type of its own.
                    Value::Text(expanded)
                }
            }
            Raw::Str(s) => Value::Str(s),
            Raw::Array(items) => {
                let mut nodes = Vec::with_capacity(items.len());
                for item in items {
                    nodes.push(self.node(item, at)?);
                }
                Value::Array(nodes)
            }
            Raw::Table(entries) => {
                let mut table = BTreeMap::new();
                for (key, raw) in entries {
                    let len = at.len();
                    join(at, &key);
                    let node = self.node(raw, at)?;
                    at.truncate(len);
                    table.insert(key, node);
                }
                Value::Table(table)
            }
        };
        Ok(Node::new(value, origin))
    }
}

/// `text` with each `${VAR}` replaced by the variable's value and each
/// `${VAR:-default}` by the value, or `default` when the variable is unset
/// or empty; `$${` is a literal `${`.
///
/// # Errors
/// A variable that is unset with no default, or a `${` with no `}`.
pub(crate) fn expand(text: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("\"${{\" with no closing \"}}\" in \"{text}\""))?;
            let expr = &inner[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("\"${{{expr}}}\" does not name a variable"));
            }
            match (var(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "${{{name}}} names an unset variable and gives no default (write ${{{name}:-default}})"
                    ));
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The line of each key of a TOML document, by dotted path.
fn toml_lines(text: &str) -> HashMap<String, usize> {
    let mut lines = HashMap::new();
    let Ok(root) = toml::de::DeTable::parse(text) else {
        return lines;
    };
    let starts = line_starts(text);
    fn walk(
        table: &toml::de::DeTable<'_>,
        at: &mut String,
        starts: &[usize],
        lines: &mut HashMap<String, usize>,
    ) {
        for (key, value) in table {
            let len = at.len();
            join(at, key.get_ref());
            lines
                .entry(at.clone())
                .or_insert_with(|| line_of(starts, key.span().start));
            if let toml::de::DeValue::Table(inner) = value.get_ref() {
                walk(inner, at, starts, lines);
            }
            at.truncate(len);
        }
    }
    walk(root.get_ref(), &mut String::new(), &starts, &mut lines);
    lines
}

/// Where each line of `text` starts.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The line (from 1) of byte `offset`.
fn line_of(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&s| s <= offset)
}

/// The line of each key of a JSON document (one the parser accepted), by
/// dotted path; keys inside arrays are not listed, as arrays are values
/// whole.
fn json_lines(text: &str) -> HashMap<String, usize> {
    /// What the scanner is inside.
    enum Frame {
        /// An object, and the key whose value comes next.
        Object(Option<String>),
        Array,
    }
    let mut lines = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let in_array = |stack: &[Frame]| stack.iter().any(|f| matches!(f, Frame::Array));
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                s.push(e);
                            }
                        }
                        _ => s.push(c),
                    }
                }
                if let Some(Frame::Object(key @ None)) = stack.last_mut() {
                    // A string where a key goes is the key.
                    *key = Some(s.clone());
                    if !in_array(&stack) {
                        let mut at = path.join(".");
                        join(&mut at, &s);
                        lines.entry(at).or_insert(line);
                    }
                }
            }
            '{' => {
                if let Some(Frame::Object(Some(key))) = stack.last() {
                    path.push(key.clone());
                }
                stack.push(Frame::Object(None));
            }
            '[' => stack.push(Frame::Array),
            '}' | ']' => {
                stack.pop();
                if let Some(Frame::Object(key)) = stack.last_mut() {
                    if c == '}' && key.is_some() {
                        path.pop();
                    }
                    *key = None;
                }
            }
            ',' => {
                if let Some(Frame::Object(key)) = stack.last_mut() {
                    *key = None;
                }
            }
            _ => {}
        }
    }
    lines
}

/// The line of each key of a YAML document in block style, by dotted path:
/// found by indentation, which covers the way configuration is written
/// (keys in flow style, `{a: 1}`, get their table's line; keys inside
/// sequences are not listed, as arrays are values whole).
fn yaml_lines(text: &str) -> HashMap<String, usize> {
    let mut lines = HashMap::new();
    // The open keys: indentation and name.
    let mut stack: Vec<(usize, String)> = Vec::new();
    // Lines more indented than this belong to a block scalar or a sequence.
    let mut skip_deeper: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let content = raw.trim_start();
        let indent = raw.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.starts_with("---") || content.starts_with("...") {
            stack.clear();
            skip_deeper = None;
            continue;
        }
        if let Some(limit) = skip_deeper {
            if indent > limit || (indent == limit && content.starts_with('-')) {
                continue;
            }
            skip_deeper = None;
        }
        if content.starts_with('-') {
            // A sequence at this level: its items are the value of the key
            // above.
            skip_deeper = Some(indent);
            continue;
        }
        let Some((key, rest)) = yaml_key(content) else {
            continue;
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let mut at = String::new();
        for (_, k) in &stack {
            join(&mut at, k);
        }
        join(&mut at, &key);
        lines.entry(at).or_insert(n + 1);
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            skip_deeper = Some(indent);
        }
        stack.push((indent, key));
    }
    lines
}

/// The key of a YAML line `key: value` (the key plain or quoted), and what
/// follows the colon.
fn yaml_key(line: &str) -> Option<(String, &str)> {
    if let Some(quote) = line.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = line[1..].find(quote)? + 1;
        let rest = line[end + 1..].trim_start().strip_prefix(':')?;
        return Some((line[1..end].to_owned(), rest));
    }
    let colon = line
        .match_indices(':')
        .find(|(i, _)| line[i + 1..].is_empty() || line[i + 1..].starts_with([' ', '\t']))?
        .0;
    let key = line[..colon].trim_end();
    if key.is_empty() || key.contains(['{', '[', '#']) {
        return None;
    }
    Some((key.to_owned(), &line[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_vars(_: &str) -> Option<String> {
        None
    }

    fn line(node: &Node, path: &str) -> Option<usize> {
        match &*node.get(path).unwrap().origin {
            Origin::File { line, .. } => *line,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_format_gives_each_key_its_line() {
        let json = "{\n  \"server\": {\n    \"port\": 8080,\n    \"tags\": [{\"x\": 1}]\n  },\n  \"name\": \"a\"\n}\n";
        let toml = "name = \"a\"\n\n[server]\nport = 8080\ntags = [1]\n";
        let yaml = "# c\nname: a\nserver:\n  port: 8080\n  tags:\n    - x: 1\n  text: |\n    not: a key\n  after: 1\n";
        let j = parse(json, Format::Json, Path::new("c.json"), &no_vars).unwrap();
        assert_eq!(line(&j, "server"), Some(2));
        assert_eq!(line(&j, "server.port"), Some(3));
        assert_eq!(line(&j, "name"), Some(6));
        let t = parse(toml, Format::Toml, Path::new("c.toml"), &no_vars).unwrap();
        assert_eq!(line(&t, "name"), Some(1));
        assert_eq!(line(&t, "server.port"), Some(4));
        let y = parse(yaml, Format::Yaml, Path::new("c.yaml"), &no_vars).unwrap();
        assert_eq!(line(&y, "name"), Some(2));
        assert_eq!(line(&y, "server.port"), Some(4));
        assert_eq!(line(&y, "server.after"), Some(9));
        assert!(y.get("server.not").is_none());
    }

    #[test]
    fn yaml_quoted_t_and_yes_stay_strings() {
        let y = parse(
            "a: \"t\"\nb: yes\nc: true\n",
            Format::Yaml,
            Path::new("c.yaml"),
            &no_vars,
        )
        .unwrap();
        assert_eq!(y.get("a").unwrap().value, Value::Str("t".into()));
        assert_eq!(y.get("b").unwrap().value, Value::Str("yes".into()));
        assert_eq!(y.get("c").unwrap().value, Value::Bool(true));
    }

    #[test]
    fn variables_expand_with_defaults() {
        let var = |n: &str| (n == "HOST").then(|| "db.local".to_owned());
        assert_eq!(
            expand("${HOST}:${PORT:-5432}", &var).unwrap(),
            "db.local:5432"
        );
        assert_eq!(
            expand("cost $5, $${HOST}", &var).unwrap(),
            "cost $5, ${HOST}"
        );
        let err = expand("${NOPE}", &var).unwrap_err();
        assert!(err.contains("NOPE") && err.contains("unset"), "{err}");
        assert!(expand("${HOST", &var).is_err());
        assert!(expand("${}", &var).is_err());
    }

    #[test]
    fn an_unset_variable_in_a_file_names_its_key() {
        let err = parse(
            "[db]\nurl = \"${MICRO_CONFIG_TEST_UNSET_VAR}\"\n",
            Format::Toml,
            Path::new("c.toml"),
            &no_vars,
        )
        .unwrap_err();
        assert!(err.starts_with("db.url: "), "{err}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse("a = [1,\n", Format::Toml, Path::new("c.toml"), &no_vars).unwrap_err();
        assert!(err.contains("line"), "{err}");
        let err = parse("{\"a\": }", Format::Json, Path::new("c.json"), &no_vars).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = parse("a: [1,\n", Format::Yaml, Path::new("c.yaml"), &no_vars).unwrap_err();
        assert!(err.contains("line"), "{err}");
    }
}
