//! Choosing a part's backend by name from the environment, and saying
//! clearly when the name cannot be used.

/// The backend chosen for `part` (`REGISTRY`, `BROKER`, …) in the
/// environment: the kind from `MICRO_<PART>` and the server from
/// `MICRO_<PART>_ADDRESS`, each `None` when unset or empty. Every part is
/// chosen this way.
#[cfg(feature = "nats")]
pub(crate) fn from_env(name: &str) -> (Option<String>, Option<String>) {
    part(&|n: &str| std::env::var(n).ok(), name)
}

/// As [`from_env`], reading the variables through `var`.
pub(crate) fn part(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> (Option<String>, Option<String>) {
    let get = |n: String| var(&n).filter(|v| !v.is_empty());
    (
        get(format!("MICRO_{name}")),
        get(format!("MICRO_{name}_ADDRESS")),
    )
}

/// One backend a part can be given by name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Choice {
    /// Its name, as `MICRO_<PART>` takes it.
    pub(crate) name: &'static str,
    /// The cargo feature of micro it needs, if it is not built in.
    pub(crate) feature: Option<&'static str>,
    /// Whether this build has it.
    pub(crate) compiled: bool,
}

impl Choice {
    /// A backend that is always there.
    pub(crate) const fn built_in(name: &'static str) -> Self {
        Self {
            name,
            feature: None,
            compiled: true,
        }
    }

    /// A backend behind the feature of the same name.
    pub(crate) const fn feature(name: &'static str, compiled: bool) -> Self {
        Self {
            name,
            feature: Some(name),
            compiled,
        }
    }
}

/// What to tell the user when `var` is set to `value`, which this build
/// cannot use; `fallback` is what is used instead.
pub(crate) fn unusable(var: &str, value: &str, choices: &[Choice], fallback: &str) -> String {
    if let Some(Choice {
        feature: Some(feature),
        compiled: false,
        ..
    }) = choices.iter().find(|c| c.name == value)
    {
        return format!(
            "{var}={value} needs micro's \"{feature}\" feature, which this build lacks: \
             enable it in Cargo.toml (micro = {{ version = \"0.1\", features = [\"{feature}\"] }}) \
             or build with `--features micro/{feature}`; using {fallback}"
        );
    }
    let names: Vec<String> = choices
        .iter()
        .map(|c| match (c.feature, c.compiled) {
            (Some(f), false) => format!("{} (with the \"{f}\" feature)", c.name),
            _ => c.name.to_owned(),
        })
        .collect();
    format!(
        "unknown {var} \"{value}\", expected one of: {}; using {fallback}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROKERS: [Choice; 3] = [
        Choice::built_in("http"),
        Choice::built_in("memory"),
        Choice::feature("nats", false),
    ];

    #[test]
    fn a_backend_behind_a_missing_feature_says_how_to_get_it() {
        assert_eq!(
            unusable("MICRO_BROKER", "nats", &BROKERS, "http"),
            "MICRO_BROKER=nats needs micro's \"nats\" feature, which this build lacks: enable it in \
             Cargo.toml (micro = { version = \"0.1\", features = [\"nats\"] }) or build with \
             `--features micro/nats`; using http"
        );
    }

    #[test]
    fn an_unknown_backend_lists_the_choices() {
        assert_eq!(
            unusable("MICRO_BROKER", "kafka", &BROKERS, "http"),
            "unknown MICRO_BROKER \"kafka\", expected one of: http, memory, nats (with the \"nats\" \
             feature); using http"
        );
        let compiled = [Choice::built_in("http"), Choice::feature("nats", true)];
        assert_eq!(
            unusable("MICRO_BROKER", "kafka", &compiled, "http"),
            "unknown MICRO_BROKER \"kafka\", expected one of: http, nats; using http"
        );
    }
}
