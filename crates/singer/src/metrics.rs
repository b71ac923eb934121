//! Singer metric log lines, written to stderr:
//!
//! ```text
//! INFO METRIC: {"type":"counter","metric":"record_count","value":1000,"tags":{"stream":"public-orders"}}
//! INFO METRIC: {"type":"timer","metric":"sync_duration","value":1.23,"tags":{"stream":"public-orders","status":"succeeded"}}
//! ```
//!
//! Counters are additive counts; timers are seconds, tagged with `status`
//! (`succeeded` / `failed`) by convention. Tags keep the order given.
//! Formatting ([`Metric::to_line`]) is separate from writing
//! ([`Metric::log`]) so the format can be tested. Writing ignores errors:
//! a metric must never stop a sync.

use std::io::Write;
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Whether a metric is a counter or a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// An additive count (`"type":"counter"`).
    Counter,
    /// A duration in seconds (`"type":"timer"`).
    Timer,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MetricValue {
    Count(u64),
    Seconds(f64),
}

/// One metric observation, borrowing its name and tags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    kind: MetricKind,
    name: &'a str,
    value: MetricValue,
    tags: &'a [(&'a str, &'a str)],
}

impl<'a> Metric<'a> {
    /// A counter, e.g. `Metric::counter("record_count", 1000, &[("stream", "public-orders")])`.
    pub fn counter(name: &'a str, value: u64, tags: &'a [(&'a str, &'a str)]) -> Metric<'a> {
        Metric {
            kind: MetricKind::Counter,
            name,
            value: MetricValue::Count(value),
            tags,
        }
    }

    /// A timer of `seconds` (non-finite values are written as `null`).
    pub fn timer(name: &'a str, seconds: f64, tags: &'a [(&'a str, &'a str)]) -> Metric<'a> {
        Metric {
            kind: MetricKind::Timer,
            name,
            value: MetricValue::Seconds(seconds),
            tags,
        }
    }

    /// A timer of `elapsed`, in seconds.
    pub fn timer_from(
        name: &'a str,
        elapsed: Duration,
        tags: &'a [(&'a str, &'a str)],
    ) -> Metric<'a> {
        Metric::timer(name, elapsed.as_secs_f64(), tags)
    }

    /// Counter or timer.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// The log line, without the newline:
    /// `INFO METRIC: {"type":…,"metric":…,"value":…,"tags":{…}}`.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_string(self).expect("a Metric always serializes");
        format!("INFO METRIC: {json}")
    }

    /// Writes the line to stderr; errors are ignored.
    pub fn log(&self) {
        let line = self.to_line();
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

impl Serialize for Metric<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Tags<'a>(&'a [(&'a str, &'a str)]);
        impl Serialize for Tags<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(4))?;
        let kind = match self.kind {
            MetricKind::Counter => "counter",
            MetricKind::Timer => "timer",
        };
        map.serialize_entry("type", kind)?;
        map.serialize_entry("metric", self.name)?;
        match self.value {
            MetricValue::Count(n) => map.serialize_entry("value", &n)?,
            MetricValue::Seconds(s) => map.serialize_entry("value", &s)?,
        }
        map.serialize_entry("tags", &Tags(self.tags))?;
        map.end()
    }
}
