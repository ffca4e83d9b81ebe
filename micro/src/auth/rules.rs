//! Access rules: who may call what.

use serde::{Deserialize, Serialize};

use super::Account;

/// Whether a rule lets a caller in or keeps it out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Lets the caller in.
    #[default]
    Grant,
    /// Keeps the caller out.
    Deny,
}

/// One access rule: for the resources it names, the callers it names get
/// `access`. Of the rules that match a call, the highest `priority`
/// decides, a deny winning a tie; when none matches, the call is refused.
///
/// In config (`auth.rules`, a list):
///
/// ```toml
/// [[auth.rules]]
/// endpoint = "Orders.*"     # or "Orders.Place", "*", "topic:orders.*"
/// scope = "orders:write"    # "" anyone, even without a token; "*" any account
/// access = "grant"          # or "deny"
/// priority = 10
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rule {
    /// The service, or a pattern (`*` matches any run of characters).
    #[serde(default = "any")]
    pub service: String,
    /// The endpoint (`Type.Method`), or `topic:<topic>` for events, or a
    /// pattern.
    #[serde(default = "any")]
    pub endpoint: String,
    /// Who the rule is for: `""` anyone, even without a token; `"*"` any
    /// account; else the accounts with this scope.
    #[serde(default)]
    pub scope: String,
    /// What those callers get.
    #[serde(default)]
    pub access: Access,
    /// Higher wins.
    #[serde(default)]
    pub priority: i32,
}

fn any() -> String {
    "*".into()
}

/// The priority of the rules the DSL declares (`#[handler(public)]`,
/// `#[handler(scopes = [..])]`): a config rule above it overrides them.
pub const DSL_PRIORITY: i32 = 100;

impl Rule {
    /// A rule granting `scope` access to `endpoint` of every service.
    pub fn grant(endpoint: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            service: any(),
            endpoint: endpoint.into(),
            scope: scope.into(),
            access: Access::Grant,
            priority: 0,
        }
    }

    /// A rule denying `scope` access to `endpoint` of every service.
    pub fn deny(endpoint: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            access: Access::Deny,
            ..Self::grant(endpoint, scope)
        }
    }

    /// This rule for `service` only.
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// This rule at `priority`.
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Whether the rule is about this resource and this caller.
    fn matches(&self, service: &str, endpoint: &str, account: Option<&Account>) -> bool {
        if !glob(&self.service, service) || !glob(&self.endpoint, endpoint) {
            return false;
        }
        match (self.scope.as_str(), account) {
            ("", _) => true,
            ("*", account) => account.is_some(),
            (scope, Some(account)) => account.scopes.iter().any(|s| s == scope),
            (_, None) => false,
        }
    }
}

/// Whether the rules let `account` (none: an anonymous caller) call
/// `endpoint` of `service`.
pub(crate) fn allows<'a>(
    rules: impl IntoIterator<Item = &'a Rule>,
    service: &str,
    endpoint: &str,
    account: Option<&Account>,
) -> bool {
    let mut best: Option<(i32, Access)> = None;
    for rule in rules {
        if !rule.matches(service, endpoint, account) {
            continue;
        }
        best = match best {
            Some((p, _)) if rule.priority > p => Some((rule.priority, rule.access)),
            Some((p, a)) if rule.priority == p => Some((
                p,
                if rule.access == Access::Deny {
                    Access::Deny
                } else {
                    a
                },
            )),
            Some(kept) => Some(kept),
            None => Some((rule.priority, rule.access)),
        };
    }
    matches!(best, Some((_, Access::Grant)))
}

/// Whether `pattern` (where `*` matches any run of characters) matches
/// `text` whole.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AccountKind;

    fn account(scopes: &[&str]) -> Account {
        Account::new(
            "alice",
            AccountKind::User,
            scopes.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    #[test]
    fn patterns() {
        assert!(glob("*", "Orders.Place"));
        assert!(glob("Orders.*", "Orders.Place"));
        assert!(!glob("Orders.*", "Users.Get"));
        assert!(glob("*.Get", "Users.Get"));
        assert!(glob("topic:orders.*", "topic:orders.placed"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(glob("Orders.Place", "Orders.Place"));
        assert!(!glob("Orders.Place", "Orders.Placed"));
    }

    #[test]
    fn a_table_of_decisions() {
        let writer = account(&["orders:write"]);
        let reader = account(&["orders:read"]);
        let cases: Vec<(&str, Vec<Rule>, Option<&Account>, bool)> = vec![
            ("no rules deny", vec![], Some(&writer), false),
            (
                "public lets anyone in",
                vec![Rule::grant("*", "")],
                None,
                true,
            ),
            (
                "any account, not anonymous",
                vec![Rule::grant("*", "*")],
                None,
                false,
            ),
            (
                "any account",
                vec![Rule::grant("*", "*")],
                Some(&reader),
                true,
            ),
            (
                "scoped: the scope",
                vec![Rule::grant("Orders.*", "orders:write")],
                Some(&writer),
                true,
            ),
            (
                "scoped: another scope",
                vec![Rule::grant("Orders.*", "orders:write")],
                Some(&reader),
                false,
            ),
            (
                "another endpoint",
                vec![Rule::grant("Users.*", "")],
                Some(&writer),
                false,
            ),
            (
                "deny beats grant by priority",
                vec![
                    Rule::grant("*", "*"),
                    Rule::deny("Orders.Place", "*").priority(10),
                ],
                Some(&writer),
                false,
            ),
            (
                "grant beats deny by priority",
                vec![
                    Rule::deny("*", "*"),
                    Rule::grant("Orders.Place", "orders:write").priority(10),
                ],
                Some(&writer),
                true,
            ),
            (
                "deny wins a tie",
                vec![Rule::grant("*", "*"), Rule::deny("*", "*")],
                Some(&writer),
                false,
            ),
            (
                "a deny for others does not touch this one",
                vec![
                    Rule::grant("*", "*"),
                    Rule::deny("*", "orders:read").priority(5),
                ],
                Some(&writer),
                true,
            ),
            (
                "another service",
                vec![Rule::grant("*", "").service("billing")],
                None,
                false,
            ),
        ];
        for (what, rules, who, want) in cases {
            assert_eq!(
                allows(&rules, "orders", "Orders.Place", who),
                want,
                "{what}"
            );
        }
    }
}
