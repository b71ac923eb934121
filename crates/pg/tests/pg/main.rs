//! `pg` against real servers, one test binary: connecting (plain, TLS,
//! stalls) and the walsender client.

mod connect;
mod walsender;
