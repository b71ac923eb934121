//! Connecting for real: plain and TLS (every sslmode, against a throwaway
//! cluster serving a certificate made here), client certificates, and the
//! errors for a wrong password, an unreachable port and a wrong host name.

use std::path::Path;

use pg::{ConnectionConfig, ErrorKind};
use pg_testkit::{cluster, Cluster, ClusterBuilder, TestPki};
use serde_json::{json, Value};

fn config(v: Value) -> ConnectionConfig {
    ConnectionConfig::from_json(v.as_object().unwrap(), "pg-tests").unwrap()
}

async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn plain_connection_and_application_name() {
    let db = cluster().create_database().await;
    let mut v = db.conn_config();
    v["sslmode"] = json!("disable");
    v["application_name"] = json!("my-pipeline");
    let client = pg::connect(&config(v)).await.unwrap();
    let row = client
        .query_one(
            "SELECT current_database(), current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db.name());
    assert_eq!(row.get::<_, String>(1), "my-pipeline");
    assert!(!uses_tls(&client).await);

    // `prefer` falls back to plain text when the server has no TLS.
    let mut v = db.conn_config();
    v["sslmode"] = json!("prefer");
    let client = pg::connect(&config(v)).await.unwrap();
    assert!(!uses_tls(&client).await);

    // `require` does not.
    let mut v = db.conn_config();
    v["ssl"] = json!("true");
    let err = pg::connect(&config(v)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn unreachable_port_is_a_clear_connect_error() {
    let v = json!({"host": "127.0.0.1", "port": 1, "user": "u", "password": "sekrit-pw",
        "dbname": "d", "connect_timeout": 5});
    let err = pg::connect(&config(v)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot connect to 127.0.0.1:1/d as u: "),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
    assert!(
        msg.ends_with("(check host, port and network, then retry)"),
        "{msg}"
    );
    assert!(!msg.contains("sekrit-pw"));
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_password() {
    let custom = ClusterBuilder::new()
        .hba("host all all 127.0.0.1/32 scram-sha-256")
        .start();
    custom
        .execute_batch("CREATE ROLE app LOGIN PASSWORD 'right-pw'")
        .await;
    let base = json!({"host": "127.0.0.1", "port": custom.port(), "user": "app",
        "dbname": "postgres", "sslmode": "disable"});

    let mut v = base.clone();
    v["password"] = json!("wrong-pw");
    let err = pg::connect(&config(v)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "cannot connect to 127.0.0.1:{}/postgres as app: password authentication failed \
             for user \"app\" (check user and password, and the server's pg_hba.conf)",
            custom.port()
        )
    );
    assert!(!format!("{err:?}").contains("wrong-pw"));

    let err = pg::connect(&config(base.clone())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("the config has none"), "{err}");

    let mut v = base;
    v["password"] = json!("right-pw");
    pg::connect(&config(v)).await.unwrap();
}

fn tls_config(c: &Cluster, host: &str, extra: Value) -> ConnectionConfig {
    let mut v = json!({"host": host, "port": c.port(), "user": "postgres",
        "password": c.password(), "dbname": "postgres"});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    config(v)
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[tokio::test]
async fn every_sslmode_against_a_tls_server() {
    let pki = TestPki::new("postgres");
    let server = pki.start_cluster(&[]);

    // prefer and require encrypt without checking the certificate.
    for mode in ["prefer", "require"] {
        let c = pg::connect(&tls_config(&server, "127.0.0.1", json!({"sslmode": mode})))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(uses_tls(&c).await, "{mode}");
    }
    // pipelinewise's ssl: "true".
    let c = pg::connect(&tls_config(&server, "127.0.0.1", json!({"ssl": "true"})))
        .await
        .unwrap();
    assert!(uses_tls(&c).await);

    // verify-ca: the chain is checked, the host name is not (127.0.0.1 is not in the certificate).
    let c = pg::connect(&tls_config(
        &server,
        "127.0.0.1",
        json!({"sslmode": "verify-ca", "ssl_root_ca_cert": pki.ca_pem}),
    ))
    .await
    .unwrap();
    assert!(uses_tls(&c).await);

    // verify-full with the right host name, CA given as a path.
    let c = pg::connect(&tls_config(
        &server,
        "localhost",
        json!({"sslmode": "verify-full", "sslrootcert": path_str(&pki.path("ca.pem"))}),
    ))
    .await
    .unwrap();
    assert!(uses_tls(&c).await);

    // verify-full rejects a host name the certificate is not for.
    let err = pg::connect(&tls_config(
        &server,
        "127.0.0.1",
        json!({"sslmode": "verify-full", "ssl_root_ca_cert": pki.ca_pem}),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");

    // verify-ca rejects a certificate from another CA.
    let other = TestPki::new("postgres");
    let err = pg::connect(&tls_config(
        &server,
        "localhost",
        json!({"sslmode": "verify-ca", "ssl_root_ca_cert": other.ca_pem}),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");

    // A CA file that does not exist is a config error naming the key.
    let err = pg::connect(&tls_config(
        &server,
        "localhost",
        json!({"sslmode": "verify-full", "ssl_root_ca_cert": "/nonexistent/ca.pem"}),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .starts_with("`ssl_root_ca_cert`: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn client_certificate_authentication_inline_and_by_path() {
    let pki = TestPki::new("postgres");
    let server = pki.start_cluster(&["hostssl all all 127.0.0.1/32 cert"]);

    // Macrometa style: every PEM inline.
    let read = |n: &str| pki.read(n);
    let c = pg::connect(&tls_config(
        &server,
        "localhost",
        json!({"sslmode": "verify-full", "ssl_root_ca_cert": pki.ca_pem,
               "ssl_client_certificate": read("client.pem"), "ssl_client_key": read("client.key")}),
    ))
    .await
    .unwrap();
    assert!(uses_tls(&c).await);

    // libpq style: paths.
    pg::connect(&tls_config(
        &server,
        "localhost",
        json!({"sslmode": "require",
               "sslcert": path_str(&pki.path("client.pem")),
               "sslkey": path_str(&pki.path("client.key"))}),
    ))
    .await
    .unwrap();

    // Without a client certificate the server refuses.
    let err = pg::connect(&tls_config(
        &server,
        "localhost",
        json!({"sslmode": "require"}),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Auth | ErrorKind::Server | ErrorKind::Tls
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("cannot connect to localhost:"),
        "{err}"
    );
}

/// Issue 10, item 1: settings for a stall noticed in about a second.
fn through_proxy(db: &pg_testkit::TestDb, proxy: &pg_testkit::StallProxy) -> ConnectionConfig {
    config(super::via_proxy(db, proxy, 1))
}

/// Issue 10, item 1: a connection whose path stops delivering without
/// closing (the proxy keeps every socket open) fails its statement within a
/// bounded time, saying it stalled and that a rerun resumes; before the fix
/// the statement waited forever.
#[tokio::test]
async fn a_stalled_connection_fails_its_statement_in_bounded_time() {
    let db = cluster().create_database().await;
    let proxy = pg_testkit::StallProxy::start(db.host(), db.port());
    let client = pg::connect(&through_proxy(&db, &proxy)).await.unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    proxy.stall();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        client.query_one("SELECT 2", &[]),
    )
    .await
    .expect("the statement still waits after 20 s")
    .unwrap_err();
    let db_error = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server-style error: {err:?}"));
    assert_eq!(db_error.code().code(), pg::stall::STALL_SQLSTATE);
    let text = db_error.message();
    assert!(
        text.starts_with(&format!("the connection to 127.0.0.1:{}/", proxy.port()))
            && text.contains(" stalled: nothing arrived for ")
            && text.contains("a new connection got no answer")
            && text.contains("a rerun resumes from the last state"),
        "{text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The connection is closed for good.
    assert!(client.query_one("SELECT 3", &[]).await.is_err());
}

/// Issue 10, item 1: silence while the server works is not a stall (the
/// check on a second connection finds the session busy), nor is an idle
/// connection.
#[tokio::test]
async fn a_slow_statement_and_an_idle_connection_are_not_stalls() {
    let db = cluster().create_database().await;
    let proxy = pg_testkit::StallProxy::start(db.host(), db.port());
    let client = pg::connect(&through_proxy(&db, &proxy)).await.unwrap();
    let slept = client
        .query_one("SELECT pg_sleep(3.5)::text", &[])
        .await
        .unwrap();
    assert_eq!(slept.get::<_, String>(0), "");
    // Idle for longer than the stall timeout, then used again.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}
