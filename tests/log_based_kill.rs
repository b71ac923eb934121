//! LOG_BASED kill loop (issue #9): `tap | target` streams while a writer
//! inserts, updates, deletes and changes keys of rows with TOASTed values;
//! the tap is SIGKILLed at a random moment, again and again, each rerun
//! starting from the last state the target printed. At the end the target
//! holds exactly the source's rows (md5 of every row).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{assert_same_rows, bin, discover, pipe, select, write_json};
use pg_testkit::cluster;
use serde_json::{json, Value};

/// A small deterministic generator (the seed is printed for reruns).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

const CHANGES: [&str; 6] = [
    "INSERT INTO kl SELECT coalesce(max(id), 0) + 1, 0, repeat(md5(random()::text), 100) FROM kl",
    "UPDATE kl SET v = v + 1 WHERE id = (SELECT id FROM kl ORDER BY random() LIMIT 1)",
    "UPDATE kl SET big = repeat(md5(random()::text), 100) WHERE id = (SELECT id FROM kl ORDER BY random() LIMIT 1)",
    "DELETE FROM kl WHERE id = (SELECT id FROM kl ORDER BY random() LIMIT 1)",
    // A key change leaving the TOASTed column unchanged.
    "UPDATE kl SET id = (SELECT max(id) + 1 FROM kl) WHERE id = (SELECT id FROM kl ORDER BY random() LIMIT 1)",
    "UPDATE kl SET id = (SELECT max(id) + 1 FROM kl), v = v + 1 WHERE id = (SELECT id FROM kl ORDER BY random() LIMIT 1)",
];

/// One `tap | target` run, the tap killed after `after`; the target's last
/// printed state, if it printed one.
fn killed_run(
    tap: &Path,
    catalog: &Path,
    state: Option<&Path>,
    target: &Path,
    after: Duration,
) -> Option<Value> {
    let mut cmd = Command::new(bin("tap-postgres"));
    cmd.arg("--config").arg(tap).arg("--catalog").arg(catalog);
    if let Some(s) = state {
        cmd.arg("--state").arg(s);
    }
    let mut tap = cmd
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tap starts");
    let target = Command::new(bin("target-postgres"))
        .arg("--config")
        .arg(target)
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::from(tap.stdout.take().expect("stdout")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("target starts");
    let deadline = Instant::now() + after;
    while Instant::now() < deadline && tap.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = tap.kill();
    tap.wait().unwrap();
    let out = target.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
}

#[tokio::test]
async fn issue9_a_tap_killed_again_and_again_loses_nothing() {
    kill_loop(false).await;
}

/// The same with bounded runs (`break_at_end_lsn`), which read their small
/// backlogs with `pg_logical_slot_peek_changes`: each run is killed while
/// it reads or lets it finish, and the next one starts where the target's
/// last state says.
#[tokio::test]
async fn a_bounded_run_read_with_the_sql_function_killed_again_and_again_loses_nothing() {
    kill_loop(true).await;
}

/// The kill loop; `bounded`: runs that end at the WAL end of their start,
/// else runs that stream until killed.
async fn kill_loop(bounded: bool) {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    source
        .execute_batch(
            "CREATE TABLE kl (id int PRIMARY KEY, v int NOT NULL, big text);
             ALTER TABLE kl ALTER COLUMN big SET STORAGE EXTERNAL;
             INSERT INTO kl SELECT i, 0, repeat(md5(i::text), 100) FROM generate_series(1, 300) i;",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut tap = source.conn_config();
    tap["replication_slot"] = json!(format!("kill_{}", source.name()).to_lowercase());
    tap["create_replication_slot"] = json!(true);
    tap["state_interval_rows"] = json!(10);
    tap["itersize"] = json!(50);
    let drain_cfg = write_json(dir.path(), "drain.json", &tap);
    if !bounded {
        tap["break_at_end_lsn"] = json!(false);
        tap["logical_poll_total_seconds"] = json!(60);
    }
    let tap_cfg = write_json(dir.path(), "tap.json", &tap);
    let mut t = target.conn_config();
    t["default_target_schema"] = json!("copy");
    t["hard_delete"] = json!(true);
    t["batch_size_rows"] = json!(20);
    let target_cfg = write_json(dir.path(), "target.json", &t);
    let catalog = write_json(
        dir.path(),
        "catalog.json",
        &select(&discover(&tap_cfg), &[("public-kl", "LOG_BASED", None)]),
    );

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let client = source.client().await;
        let mut rng = Lcg(seed);
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = rng.next(4) as usize + 1;
                let mut sql = String::from("BEGIN;");
                for _ in 0..k {
                    sql.push_str(CHANGES[rng.next(CHANGES.len() as u64) as usize]);
                    sql.push(';');
                }
                sql.push_str("COMMIT;");
                client.batch_execute(&sql).await.unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };

    let mut rng = Lcg(seed ^ 0x9e37_79b9);
    let mut state: Option<Value> = None;
    let started = Instant::now();
    // A bounded run is short: kill it sooner, and more often.
    let (runs, from, spread) = if bounded {
        (20, 10, 100)
    } else {
        (8, 300, 1200)
    };
    for _ in 0..runs {
        let after = Duration::from_millis(from + rng.next(spread));
        let state_path = state
            .as_ref()
            .map(|s| write_json(dir.path(), "state.json", s));
        let (tap_cfg, catalog, target_cfg) = (tap_cfg.clone(), catalog.clone(), target_cfg.clone());
        let printed = tokio::task::spawn_blocking(move || {
            killed_run(
                &tap_cfg,
                &catalog,
                state_path.as_deref(),
                &target_cfg,
                after,
            )
        })
        .await
        .unwrap();
        if printed.is_some() {
            state = printed;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let transactions = writer.await.unwrap();
    assert!(
        transactions > 20,
        "the writer ran ({transactions} transactions)"
    );

    // A last, uninterrupted run catches up to the end of the WAL.
    let state_path = state
        .as_ref()
        .map(|s| write_json(dir.path(), "state.json", s));
    let mut args: Vec<&Path> = vec![&drain_cfg, &catalog];
    if let Some(p) = &state_path {
        args.push(p);
    }
    let last = tokio::task::spawn_blocking({
        let target_cfg = target_cfg.clone();
        let args: Vec<std::path::PathBuf> = args.iter().map(|p| p.to_path_buf()).collect();
        move || {
            let a: Vec<&Path> = args.iter().map(|p| p.as_path()).collect();
            pipe(&a, &[&target_cfg])
        }
    })
    .await
    .unwrap();
    last.assert_success();
    assert_same_rows(
        &source,
        "SELECT id, md5(t::text) FROM (SELECT id, v, big FROM kl) t ORDER BY id",
        &target,
        "SELECT id, md5(t::text) FROM (SELECT id, v, big FROM copy.kl) t ORDER BY id",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    source
        .execute_batch(&format!(
            "SELECT pg_drop_replication_slot('{}')",
            tap["replication_slot"].as_str().unwrap()
        ))
        .await;
}
