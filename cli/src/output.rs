//! What the commands print: aligned tables for people, JSON for scripts,
//! and failures as a message and an exit code.

use std::process::ExitCode;

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An error micro reported: its detail is printed, its code picks the
    /// exit code.
    Micro(micro::Error),
    /// Bad usage or input (exit code 2).
    Usage(String),
}

impl From<micro::Error> for Failure {
    fn from(e: micro::Error) -> Self {
        Failure::Micro(e)
    }
}

impl From<micro::registry::RegistryError> for Failure {
    fn from(e: micro::registry::RegistryError) -> Self {
        Failure::Micro(e.into())
    }
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }

    /// The exit code: 2 bad input, 3 not found, 4 unavailable, 1 the rest.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Micro(e) => match e.code() {
                400 | 415 | 422 => 2,
                404 => 3,
                408 | 503 | 504 => 4,
                _ => 1,
            },
        }
    }

    /// Prints the failure on stderr and gives its exit code.
    pub(crate) fn report(self) -> ExitCode {
        let code = self.code();
        match &self {
            Failure::Usage(m) => eprintln!("micro: {m}"),
            Failure::Micro(e) => eprintln!("micro: {} ({} {})", e.detail(), e.code(), e.status()),
        }
        ExitCode::from(code)
    }
}

/// Prints `value` as pretty JSON.
pub(crate) fn json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("micro: printing JSON: {e}"),
    }
}

/// Prints `rows` under `headers`, each column as wide as its widest cell.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        println!("{out}");
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_error_code() {
        let code = |c: u16| Failure::Micro(micro::Error::new("", c, "x")).code();
        assert_eq!(code(404), 3);
        assert_eq!(code(503), 4);
        assert_eq!(code(504), 4);
        assert_eq!(code(400), 2);
        assert_eq!(code(500), 1);
        assert_eq!(code(409), 1);
        assert_eq!(Failure::usage("bad").code(), 2);
    }
}
