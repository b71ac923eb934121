//! tap-postgres against a real server: the binary is run as a user runs it
//! and its exact output is checked.

mod support;

mod binary;
mod discovery;
mod encodings;
mod errors;
mod full_table;
mod incremental;
mod log_based;
mod log_based_issue9;
