//! The environment and the command line as trees.

use std::sync::Arc;

use super::value::{Node, Origin, Value};

/// The variables that start with `prefix` and `_`: `APP_DATABASE__MAX_CONNS`
/// is `database.max_conns`. A double underscore nests; single ones stay in
/// the name; names are lowercased. Values are text, typed when read.
pub(crate) fn env(prefix: &str, vars: impl IntoIterator<Item = (String, String)>) -> Node {
    let start = format!("{prefix}_");
    let mut root = Node::table(Arc::new(Origin::Env {
        var: format!("{start}*"),
    }));
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with(&start) && name.len() > start.len())
        .collect();
    // The same order on every load, whatever the environment's.
    vars.sort();
    for (name, value) in vars {
        let path: Vec<String> = name[start.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            tracing::warn!(var = %name, "config: an empty segment in the variable's name; ignored");
            continue;
        }
        let origin = Arc::new(Origin::Env { var: name });
        root.insert(&path, Node::new(Value::Text(value), origin));
    }
    root
}

/// The `--key=value`, `--key value` and bare `--key` (`true`) arguments,
/// keys dotted paths (`--database.max_conns=5`); other arguments are left
/// to the program, and `--` ends the flags.
///
/// # Errors
/// A flag with an empty path segment, such as `--a..b`.
pub(crate) fn args(args: &[String]) -> Result<Node, String> {
    let mut root = Node::table(Arc::new(Origin::Flag { arg: "*".into() }));
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        let (key, value) = match flag.split_once('=') {
            Some((key, value)) => (key, value.to_owned()),
            None => match args.get(i) {
                Some(next) if !next.starts_with("--") => {
                    i += 1;
                    (flag, next.clone())
                }
                _ => (flag, "true".to_owned()),
            },
        };
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("flag \"--{key}\": an empty segment in its path"));
        }
        let origin = Arc::new(Origin::Flag {
            arg: key.to_owned(),
        });
        root.insert(&path, Node::new(Value::Text(value), origin));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn double_underscores_nest_and_single_ones_stay() {
        let vars = [
            ("APP_DATABASE__MAX_CONNS", "5"),
            ("APP_LOG_LEVEL", "debug"),
            ("APPLE", "no"),
            ("OTHER_X", "no"),
            ("APP_BAD____X", "no"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let tree = env("APP", vars);
        let json = tree.to_json("", &|_| false);
        assert_eq!(
            json,
            serde_json::json!({"database": {"max_conns": "5"}, "log_level": "debug"})
        );
        assert_eq!(
            *tree.get("database.max_conns").unwrap().origin,
            Origin::Env {
                var: "APP_DATABASE__MAX_CONNS".into()
            }
        );
    }

    #[test]
    fn flags_take_three_forms_and_stop_at_double_dash() {
        let tree = args(&s(&[
            "serve",
            "--database.max_conns=5",
            "--name",
            "x",
            "--verbose",
            "--empty=",
            "--",
            "--after=1",
        ]))
        .unwrap();
        assert_eq!(
            tree.to_json("", &|_| false),
            serde_json::json!({"database": {"max_conns": "5"}, "name": "x", "verbose": "true", "empty": ""})
        );
        assert!(args(&s(&["--a..b=1"])).is_err());
    }
}
