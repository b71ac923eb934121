//! `pg` against real servers, one test binary: connecting (plain, TLS,
//! stalls) and the walsender client.

mod connect;
mod walsender;

use pg_testkit::{StallProxy, TestDb};
use serde_json::{json, Value};

/// Issue 10: the settings of `db` reached through `proxy`, a stall noticed
/// after `stall_seconds`, keepalives and the user timeout small.
fn via_proxy(db: &TestDb, proxy: &StallProxy, stall_seconds: u64) -> Value {
    let mut v = db.conn_config();
    v["host"] = json!("127.0.0.1");
    v["port"] = json!(proxy.port());
    v["sslmode"] = json!("disable");
    v["connect_timeout"] = json!(5);
    v["stall_timeout_seconds"] = json!(stall_seconds);
    v["keepalives_idle"] = json!(1);
    v["keepalives_interval"] = json!(1);
    v["keepalives_count"] = json!(2);
    v["tcp_user_timeout"] = json!(2000);
    v
}
