//! Fuzzing the input (issue #10): a few hundred seeded mutations of a valid
//! message stream (bytes flipped, deleted or inserted, lines duplicated,
//! swapped or cut, hostile tokens spliced in), each run by the real binary
//! with a timeout. Whatever the input: no panic, no hang, a clean exit (0 or
//! an error), no state printed past the line an error names, and every
//! record before a printed state is in its table.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::*;

const CASES: u64 = 200;
const PARALLEL: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(30);

/// xorshift64*: seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The valid stream of case `c`: a keyed and a key-less stream, records
/// with every kind of value, states with unique values.
fn base(c: u64) -> Vec<String> {
    let k = format!("public-f{c}k");
    let a = format!("public-f{c}a");
    let mut m = vec![
        schema(
            &k,
            json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
                   "price": {"type": ["null", "number"]}, "doc": {"type": ["null", "object"]},
                   "ts": {"type": ["null", "string"], "format": "date-time"}}),
            &["id"],
        ),
        schema(&a, json!({"n": {"type": "integer"}}), &[]),
    ];
    for i in 0..24 {
        m.push(
            json!({"type": "RECORD", "stream": k, "time_extracted": "2024-05-01T00:00:00Z",
                      "record": {"id": i % 9, "name": format!("n\t{i}\\"), "price": i as f64 + 0.5,
                                 "doc": {"i": i}, "ts": "2024-05-01T10:00:00+02:00"}}),
        );
        if i % 3 == 0 {
            m.push(record(&a, json!({"n": i})));
        }
        if i % 4 == 3 {
            m.push(state(json!({"s": i})));
        }
    }
    m.iter().map(Value::to_string).collect()
}

const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\t",
    "\n",
    "\\u0000",
    "\\ud800",
    "\\n",
    "null",
    "1e400",
    "-",
    "\"x\"",
    "{}",
    "[]",
    "\r\n",
    "\u{feff}",
    "\u{fffd}",
    "99999999999999999999",
    "\"type\":\"STATE\"",
    "\"type\":\"SCHEMA\"",
    "\"stream\":\"public-f0k\"",
];

fn mutate(lines: &mut Vec<String>, rng: &mut Rng) -> Vec<u8> {
    for _ in 0..1 + rng.below(3) {
        let l = rng.below(lines.len());
        match rng.below(7) {
            0 => {
                let j = rng.below(lines.len());
                lines.swap(l, j);
            }
            1 => {
                let dup = lines[l].clone();
                lines.insert(rng.below(lines.len()), dup);
            }
            2 => {
                lines.remove(l);
                if lines.is_empty() {
                    lines.push(String::new());
                }
            }
            3 => {
                let s = &mut lines[l];
                let at = floor_char(s, rng.below(s.len() + 1));
                s.insert_str(at, TOKENS[rng.below(TOKENS.len())]);
            }
            4 => {
                let s = &mut lines[l];
                let from = floor_char(s, rng.below(s.len() + 1));
                let to = floor_char(s, (from + 1 + rng.below(8)).min(s.len()));
                s.replace_range(from..to, "");
            }
            5 => {
                let s = &mut lines[l];
                let at = floor_char(s, rng.below(s.len() + 1));
                s.truncate(at);
            }
            _ => {
                // A random byte, possibly not UTF-8: done on the bytes below.
                let mut bytes = lines[l].clone().into_bytes();
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len());
                    bytes[at] = (rng.next() & 0xff) as u8;
                }
                let mut out = Vec::new();
                for (i, line) in lines.iter().enumerate() {
                    out.extend_from_slice(if i == l { &bytes } else { line.as_bytes() });
                    out.push(b'\n');
                }
                return out;
            }
        }
    }
    let mut out = lines.join("\n").into_bytes();
    if rng.below(4) > 0 {
        out.push(b'\n');
    }
    out
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

struct Outcome {
    input: Vec<u8>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_case(cfg: std::path::PathBuf, input: Vec<u8>) -> Outcome {
    let mut child = target_command(&cfg).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdin = child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!(
                "the target hung for {TIMEOUT:?} on:\n{}",
                String::from_utf8_lossy(&input)
            );
        }
    };
    writer.join().unwrap();
    Outcome {
        input,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The 1-based line of each STATE value text in `input`, and the ids of
/// keyed records of `stream` before each line.
fn state_lines(input: &[u8]) -> HashMap<String, u64> {
    let mut at = HashMap::new();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if v["type"] == "STATE" {
            at.entry(v["value"].to_string()).or_insert(i as u64 + 1);
        }
    }
    at
}

#[tokio::test]
async fn mutated_inputs_never_panic_hang_or_print_a_state_past_a_bad_line() {
    let db = pg_testkit::cluster().create_database().await;
    let client = db.client().await;
    let mut rng = Rng(0x5eed_0010_f022_2026);
    let mut cases = Vec::new();
    for c in 0..CASES {
        let mut lines = base(c);
        let input = mutate(&mut lines, &mut rng);
        let extra = json!({"primary_key_required": false, "batch_size_rows": 1 + rng.below(6),
                           "add_metadata_columns": c % 2 == 0, "validate_records": c % 3 == 0});
        cases.push((c, config(&db, extra), input));
    }
    let (mut failed, mut checked) = (0, 0);
    for chunk in cases.chunks(PARALLEL) {
        let runs: Vec<_> = chunk
            .iter()
            .map(|(_, cfg, input)| {
                let (cfg, input) = (cfg.path().to_owned(), input.clone());
                tokio::task::spawn_blocking(move || run_case(cfg, input))
            })
            .collect();
        for ((c, _, _), run) in chunk.iter().zip(runs) {
            let o = run.await.unwrap();
            let shown = String::from_utf8_lossy(&o.input);
            assert!(
                matches!(o.code, Some(0 | 1)) && !o.stderr.contains("panicked"),
                "case {c}: exit {:?}\n{}\ninput:\n{shown}",
                o.code,
                o.stderr
            );
            let lines_of = state_lines(&o.input);
            let printed: Vec<u64> = o
                .stdout
                .lines()
                .map(|s| {
                    let v: Value = serde_json::from_str(s).expect("a state line is JSON");
                    *lines_of
                        .get(&v.to_string())
                        .unwrap_or_else(|| panic!("case {c}: state {s} is not in the input"))
                })
                .collect();
            if o.code == Some(1) {
                failed += 1;
                let critical = o.stderr.lines().find(|l| l.starts_with("CRITICAL"));
                let critical = critical.unwrap_or_else(|| panic!("case {c}: {}", o.stderr));
                if let Some(bad) = critical
                    .split("line ")
                    .nth(1)
                    .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit()).next())
                    .and_then(|d| d.parse::<u64>().ok())
                {
                    assert!(
                        printed.iter().all(|&l| l < bad),
                        "case {c}: state printed past line {bad}: {printed:?}\n{critical}"
                    );
                }
            }
            // Every keyed record before the last printed state is loaded.
            let Some(&last) = printed.iter().max() else {
                continue;
            };
            let mut want = std::collections::BTreeSet::new();
            for line in o.input.split(|&b| b == b'\n').take(last as usize) {
                let Ok(v) = serde_json::from_slice::<Value>(line) else {
                    continue;
                };
                if v["type"] == "RECORD" && v["stream"] == format!("public-f{c}k") {
                    if let Some(id) = v["record"]["id"].as_i64() {
                        want.insert(id);
                    }
                }
            }
            if want.is_empty() {
                continue;
            }
            let Ok(rows) = client
                .query(&format!("SELECT id::bigint FROM tgt.f{c}k"), &[])
                .await
            else {
                continue; // a mutated SCHEMA named another table or column
            };
            let have: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
            checked += 1;
            assert!(
                want.is_subset(&have),
                "case {c}: committed rows missing: want {want:?}, have {have:?}\ninput:\n{shown}"
            );
        }
    }
    // The mutations reach both outcomes, and the row check ran.
    assert!(
        (CASES / 5..=CASES * 4 / 5).contains(&failed),
        "{failed} of {CASES} failed"
    );
    assert!(checked >= CASES / 5, "rows checked in {checked} cases");
}
