//! The procedural macro of `session-runtime`: `#[with_session]`. Depend on `session-runtime`,
//! which re-exports it, rather than on this crate.
//!
//! This crate only parses and generates; what the generated code calls lives in
//! `session_runtime::__private`. The pipeline, one module a step: `attr` (the options) and
//! `ast` (the item) parse, `valid` checks every rule and builds the model, `expand` generates.
#![forbid(unsafe_code)]

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;

// The examples use `session_runtime`, which this crate cannot depend on: they are hidden from
// this crate's doctests and run as `session_runtime`'s (see its `WithSessionDocs`).
#[cfg_attr(not(doctest), doc = include_str!("with_session.md"))]
#[proc_macro_attribute]
pub fn with_session(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::with_session(args.into(), item.into()).into()
}
