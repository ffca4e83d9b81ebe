//! Compile-fail and compile-pass cases for `#[service]` and `#[handler]`.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p
//! micro-ui-tests` and read the diff before committing.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("fail/*.rs");
    t.pass("pass/*.rs");
}
