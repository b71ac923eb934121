//! The binary COPY path (what FULL_TABLE and INCREMENTAL read) against the
//! text COPY path, on the real server: byte-identical JSON for every type of
//! the encodings table and for thousands of generated values of every type
//! the binary path decodes itself (floats across their whole range,
//! numerics of every scale, dates and timestamps from 4713 BC past 9999,
//! times, uuids, integers, strings).

use pg_testkit::cluster;
use tap_postgres::binary::copy_rows;
use tap_postgres::discovery::{discover, Filter};
use tap_postgres::encode::SESSION_SETTINGS;
use tap_postgres::read::copy_lines;
use tap_postgres::rows::{RowEncoder, StreamPlan};
use tap_postgres::values::ValueOptions;

const GENERATED: &str = r#"
CREATE TABLE gen AS
SELECT i AS id,
  (random() * 65535 - 32768)::int2 AS c_i2,
  (random() * 4294967295 - 2147483648)::int4 AS c_i4,
  ((random() - 0.5) * 1.8e19)::int8 AS c_i8,
  ((random() - 0.5) * 10 ^ (random() * 600 - 300))::float8 AS c_f8,
  ((random() - 0.5) * 10 ^ (random() * 70 - 35))::float4 AS c_f4,
  -- every mantissa bit random, exponents across the range: hits the
  -- rounding-interval bounds PostgreSQL's Ryu treats specially
  ((floor(random() * 8388608) + 8388608) * 2.0::float8 ^ (floor(random() * 254) - 149))::float4 AS c_f4bits,
  ((floor(random() * 4503599627370496) + 4503599627370496) * 2.0::float8 ^ (floor(random() * 2045) - 1074)) AS c_f8bits,
  CASE WHEN i % 4 = 0 THEN round((random() * 1000)::numeric, 0)::float8
       ELSE (i % 1000) / 100.0 END AS c_f8s,
  round(((random() - 0.5) * 10 ^ (random() * 40 - 20))::numeric, (i % 25)) AS c_num,
  ((random() - 0.5) * 10 ^ (i % 30))::numeric(40, 8) AS c_num8,
  i % 3 = 0 AS c_bool,
  '2000-01-01'::date + ((random() - 0.5) * 4800000)::int AS c_date,
  '2000-01-01'::timestamp + ((random() - 0.5) * 4.1e17)::bigint * interval '1 microsecond'
     + (i % 7) * interval '1 microsecond' AS c_ts,
  '2000-01-01'::timestamptz + ((random() - 0.5) * 4.1e17)::bigint * interval '1 microsecond'
     + CASE WHEN i % 2 = 0 THEN interval '0' ELSE (i % 1000) * interval '1 millisecond' END AS c_tstz,
  ((random() * 86400e6)::bigint * interval '1 microsecond')::time AS c_time,
  gen_random_uuid() AS c_uuid,
  md5(i::text) || E' \u00e9\t"\\' AS c_text,
  ('x' || i)::varchar(12) AS c_vc,
  ('y' || (i % 10))::char(5) AS c_ch,
  ('n' || i)::name AS c_name,
  chr(i % 255 + 1)::"char" AS c_char,
  ('10.0.' || (i % 256) || '.1')::inet AS c_inet
FROM generate_series(1, 3000) i;
INSERT INTO gen (id, c_f8, c_f4, c_num, c_date, c_ts, c_time) VALUES
  (-1, '4.9e-324', '1.4e-45', '0.00000000000000000001', '4713-01-01 BC', '4713-01-01 00:00:00 BC', '24:00:00'),
  (-2, '1e15', '1e6', '99999999999999999999.99999', '5874897-12-31', '294276-12-31 23:59:59.999999', '00:00:00'),
  (-3, '999999999999999.9', '999999', '-0.5', '0001-01-01', '0001-01-01 00:00:00', '12:00:00.000001'),
  (-4, '0.0001', '0.0001', '10000', '0001-12-31 BC', '0001-12-31 23:59:59.5 BC', NULL),
  (-5, '0.00001', '0.00001', '1e-1000', 'infinity', '-infinity', NULL),
  (-6, '123456789012345678', '16777217', '-0', '-infinity', 'infinity', NULL),
  (-7, '-0', '-0', 'NaN', '1999-12-31', '1999-12-31 23:59:59.999999', NULL),
  (-8, 'NaN', 'Infinity', 'Infinity', '2000-02-29', '2000-02-29 00:00:00.1', NULL),
  (-9, '1.7976931348623157e308', '3.4028235e38', '-Infinity', '1582-10-15', '1900-02-28 00:00:00', NULL);
"#;

async fn both_paths(db: &pg_testkit::TestDb, table: &str) -> (Vec<String>, Vec<String>) {
    let mut client = db.client().await;
    client.batch_execute(SESSION_SETTINGS).await.unwrap();
    let filter = Filter {
        schemas: None,
        tables: Some(vec![table.to_string()]),
    };
    let tables = discover(&client, &filter).await.unwrap();
    let names: Vec<&str> = tables[0].columns.iter().map(|c| c.name.as_str()).collect();
    let plan = StreamPlan::new(&tables[0], &names, &[], &ValueOptions::default());
    let from = format!(
        "FROM public.{table} ORDER BY {}",
        plan.order_by(&["id".into()])
    );
    let tx = client.transaction().await.unwrap();
    let mut text = Vec::new();
    let mut encoder = RowEncoder::new(&plan);
    copy_lines(
        &tx,
        &format!("SELECT {} {from}", plan.select_list()),
        |line| {
            text.push(
                String::from_utf8(
                    encoder
                        .encode_line(line)
                        .map_err(tap_postgres::Error::source_data)?
                        .to_vec(),
                )
                .expect("UTF-8"),
            );
            Ok(())
        },
    )
    .await
    .unwrap();
    // A fresh plan: encoders remember what the SCHEMA announced so far.
    let plan = StreamPlan::new(&tables[0], &names, &[], &ValueOptions::default());
    let mut encoder = RowEncoder::new(&plan);
    let mut binary = Vec::new();
    let query = format!("SELECT {} {from}", plan.binary_select_list());
    copy_rows(
        &tx,
        &query,
        plan.columns.len(),
        &singer::Writable::always(),
        |row, fields| {
            binary.push(
                String::from_utf8(
                    encoder
                        .encode_binary(row, fields)
                        .map_err(tap_postgres::Error::source_data)?
                        .to_vec(),
                )
                .expect("UTF-8"),
            );
            Ok(())
        },
    )
    .await
    .unwrap();
    (text, binary)
}

fn assert_same(text: &[String], binary: &[String]) {
    assert_eq!(text.len(), binary.len());
    for (t, b) in text.iter().zip(binary) {
        assert_eq!(t, b, "text path (left) and binary path (right) differ");
    }
}

#[tokio::test]
async fn binary_copy_gives_the_json_of_text_copy_for_every_type() {
    let db = cluster().create_database().await;
    db.execute_batch(crate::encodings::TABLE).await;
    let (text, binary) = both_paths(&db, "t").await;
    assert_eq!(text.len(), 3);
    assert_same(&text, &binary);
}

#[tokio::test]
async fn binary_copy_gives_the_json_of_text_copy_on_generated_values() {
    let db = cluster().create_database().await;
    db.execute_batch(GENERATED).await;
    let (text, binary) = both_paths(&db, "gen").await;
    assert_eq!(text.len(), 3009);
    assert_same(&text, &binary);
}
