use std::time::Duration;

use singer::{Metric, MetricKind};

#[test]
fn counter_line() {
    let m = Metric::counter("record_count", 1000, &[("stream", "public-orders")]);
    assert_eq!(m.kind(), MetricKind::Counter);
    assert_eq!(
        m.to_line(),
        r#"INFO METRIC: {"type":"counter","metric":"record_count","value":1000,"tags":{"stream":"public-orders"}}"#
    );
}

#[test]
fn timer_line() {
    let tags = [("stream", "public-orders"), ("status", "succeeded")];
    assert_eq!(
        Metric::timer("sync_duration", 1.23, &tags).to_line(),
        r#"INFO METRIC: {"type":"timer","metric":"sync_duration","value":1.23,"tags":{"stream":"public-orders","status":"succeeded"}}"#
    );
    assert_eq!(
        Metric::timer_from(
            "sync_duration",
            Duration::from_millis(2500),
            &[("status", "failed")]
        )
        .to_line(),
        r#"INFO METRIC: {"type":"timer","metric":"sync_duration","value":2.5,"tags":{"status":"failed"}}"#
    );
}

#[test]
fn tags_are_escaped_and_may_be_empty() {
    assert_eq!(
        Metric::counter("x", 0, &[("stream", "a\"b")]).to_line(),
        r#"INFO METRIC: {"type":"counter","metric":"x","value":0,"tags":{"stream":"a\"b"}}"#
    );
    assert_eq!(
        Metric::counter("x", 1, &[]).to_line(),
        r#"INFO METRIC: {"type":"counter","metric":"x","value":1,"tags":{}}"#
    );
}
