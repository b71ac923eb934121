//! Kill-safety: SIGKILL the target mid-stream, or let it die at a
//! failpoint (`TARGET_POSTGRES_FAILPOINT`, see `src/failpoint.rs`), rerun
//! from the last state it printed, and the tables hold every record exactly
//! once.

use std::io::BufRead as _;
use std::process::Stdio;

use serde_json::{json, Value};

use crate::*;

const N: i64 = 30_000;

/// Two streams: `public-k` (keyed, every id updated twice) and `public-a`
/// (key-less, append). A state after every 500 records says how many lines
/// of the input are done.
///
/// Delivery is at-least-once: records committed after the last printed
/// state are sent again by the rerun. Upserts make that harmless for keyed
/// streams (checked exactly); a key-less stream gets those rows twice, so
/// for it the test checks that nothing is missing and that any extra rows
/// are exactly replays of records after the last printed state.
fn messages() -> Vec<Value> {
    messages_of(N)
}

fn messages_of(n: i64) -> Vec<Value> {
    let mut m = vec![
        schema(
            "public-k",
            json!({"id": {"type": "integer"}, "v": {"type": "string"}}),
            &["id"],
        ),
        schema("public-a", json!({"n": {"type": "integer"}}), &[]),
    ];
    for i in 0..n {
        m.push(record(
            "public-k",
            json!({"id": i % (n / 2), "v": format!("v{i}")}),
        ));
        m.push(record("public-a", json!({"n": i})));
        if i % 500 == 499 {
            let done = m.len();
            m.push(state(json!({"done": done})));
        }
    }
    m
}

async fn check(db: &pg_testkit::TestDb, replayed_from: i64) {
    check_of(db, N, replayed_from).await
}

async fn check_of(db: &pg_testkit::TestDb, n: i64, replayed_from: i64) {
    let k = db
        .query_json("SELECT count(*) AS n, sum(id) AS s, min(v) AS lo FROM tgt.k")
        .await;
    let half = n / 2;
    assert_eq!(k[0]["n"], json!(half));
    assert_eq!(k[0]["s"], json!(half * (half - 1) / 2));
    // Every id's last record is from the second half.
    let stale = db
        .query_json(&format!(
            "SELECT count(*) AS n FROM tgt.k WHERE substr(v, 2)::int < {half}"
        ))
        .await;
    assert_eq!(stale[0]["n"], json!(0));
    let a = db
        .query_json(
            "SELECT count(DISTINCT n) AS d, min(n) FILTER (WHERE dup) AS first_dup FROM \
                     (SELECT n, count(*) OVER (PARTITION BY n) > 1 AS dup FROM tgt.a) x",
        )
        .await;
    assert_eq!(a[0]["d"], json!(n), "nothing missing");
    if let Some(first) = a[0]["first_dup"].as_i64() {
        assert!(
            first >= replayed_from,
            "only records after the state doubled: {first} < {replayed_from}"
        );
    }
}

#[tokio::test]
async fn killed_and_rerun_from_the_last_state_loses_and_doubles_nothing() {
    let all = messages();
    for kill_after_states in [1usize, 7] {
        let db = pg_testkit::cluster().create_database().await;
        let cfg = config(
            &db,
            json!({"batch_size_rows": 1500, "primary_key_required": false}),
        );
        let mut child = target_command(cfg.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let writer = feed(&mut child, lines(&all));
        let mut last: Option<Value> = None;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 {
            last = Some(serde_json::from_str(&line).unwrap());
            line.clear();
            seen += 1;
            if seen == kill_after_states {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        child.wait().unwrap();
        writer.join().unwrap();
        let done = last.expect("a state before the kill")["done"]
            .as_u64()
            .unwrap() as usize;
        assert!(done < all.len());
        // The tap resumes from the state: SCHEMAs again, then what follows.
        let mut rerun = all[..2].to_vec();
        rerun.extend_from_slice(&all[done + 1..]);
        let r = run(
            &db,
            json!({"batch_size_rows": 1500, "primary_key_required": false}),
            &lines(&rerun),
        )
        .success();
        assert_eq!(
            r.states().last().unwrap(),
            &json!({"done": all.len() - 1}),
            "the final state is printed"
        );
        let replayed_from = all[done + 1..]
            .iter()
            .find(|m| m["stream"] == "public-a")
            .map_or(N, |m| m["record"]["n"].as_i64().unwrap());
        check(&db, replayed_from).await;
    }
}

/// Each failpoint, at its third hit: the target dies there (abort: nothing
/// more committed or printed), the rerun from its last printed state (from
/// the start when it printed none) converges exactly, and prints the final
/// state. Nothing lost, nothing doubled (keyed), key-less replays only after
/// the last printed state.
#[tokio::test]
async fn dying_at_each_failpoint_and_rerunning_loses_and_doubles_nothing() {
    const M: i64 = 6_000;
    let all = messages_of(M);
    let cfg = json!({"batch_size_rows": 1500, "primary_key_required": false});
    for point in [
        "state-read",
        "copy-mid",
        "before-commit",
        "committed",
        "state-print",
    ] {
        let db = pg_testkit::cluster().create_database().await;
        let file = config(&db, cfg.clone());
        let mut child = target_command(file.path())
            .env("TARGET_POSTGRES_FAILPOINT", format!("{point}:3"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let writer = feed(&mut child, lines(&all));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "{point}: it should have died");
        assert!(
            stderr.contains(&format!("failpoint {point} reached")),
            "{point}: {stderr}"
        );
        let printed: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let done = printed
            .last()
            .map_or(1, |s| s["done"].as_u64().unwrap() as usize);
        if point == "state-print" {
            assert_eq!(printed.len(), 2, "{point}: died before the third");
        }
        let mut rerun = all[..2].to_vec();
        rerun.extend_from_slice(&all[done + 1..]);
        let r = run(&db, cfg.clone(), &lines(&rerun)).success();
        assert_eq!(
            r.states().last().unwrap(),
            &json!({"done": all.len() - 1}),
            "{point}: the final state is printed"
        );
        let replayed_from = all[done + 1..]
            .iter()
            .find(|m| m["stream"] == "public-a")
            .map_or(M, |m| m["record"]["n"].as_i64().unwrap());
        check_of(&db, M, replayed_from).await;
    }
}
