//! Shared definitions for the runnable examples in `examples/`.
//!
//! A service's definition lives in a library so that its server and its
//! clients share the request and response types and the generated typed
//! client, as a Go Micro service shares its proto package.

pub mod chat;
#[cfg(feature = "protobuf")]
pub mod greeter;
pub mod helloworld;

// The README's code blocks are compiled and run as doc tests, so they
// cannot drift from the code.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
