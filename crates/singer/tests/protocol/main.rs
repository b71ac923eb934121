//! The `singer` crate's tests: one binary, one module per source module.
//! No database needed. Outputs are compared as exact strings.

mod catalog;
mod message;
mod metrics;
mod reader;
mod state;
mod writer;
