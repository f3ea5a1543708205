//! A tiny Prometheus registry (text exposition format 0.0.4) with no extra crates.
//!
//! Why our own: the operator needs a handful of counters, gauges and one histogram; a
//! metrics crate would cost more binary and memory than the whole registry below.
//!
//! Every metric has a fixed set of label *names*; label *values* are chosen by the
//! caller. Values are escaped on output, and a family holds at most [`MAX_SERIES`] label
//! sets: further sets fold into one series whose values are all `"other"`, so a bug
//! that feeds unbounded values cannot grow memory without bound.
//!
//! **Label values must never carry secrets** (tokens, passwords, keys, Authorization
//! headers) nor anything user-controlled and unbounded. Callers pass short, fixed
//! vocabularies (`"success"`, `"create"`, an HTTP verb) or the name of an ECRPullSecret,
//! which every reader of the cluster's CRs sees anyway; never a Secret reference or a
//! role ARN. Every series of a CR is removed when the CR goes.
//!
//! Values are atomics; the map from label values to a series sits behind a mutex that is
//! held only to find or insert the series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Prefix shared by every metric of this operator.
pub(crate) const PREFIX: &str = "ecr_creds_refresher_";

/// Distinct label sets kept per family before new ones fold into `"other"`.
pub(crate) const MAX_SERIES: usize = 1000;

/// Label value used for label sets past [`MAX_SERIES`].
const OVERFLOW_VALUE: &str = "other";

/// Reconcile duration buckets (seconds): a reconcile is a few API calls, usually
/// milliseconds; the long tail covers AWS retries and API throttling.
pub(crate) const RECONCILE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The operator's registry, shared by every part that reports: `app::start` makes one
/// per operator and hands it in, so nothing reports to a global and two operators in
/// one process (the tests) never see each other's samples.
pub(crate) type Metrics = Arc<Registry>;

// === Registry ===

/// Every metric of the operator; see [`Metrics`] for who holds it.
pub(crate) struct Registry {
    token_fetches: Family<Counter>,
    token_expiry: Family<Gauge>,
    ready: Family<Gauge>,
    next_refresh: Family<Gauge>,
    reconcile_duration: Family<Histogram>,
    queue_depth: Gauge,
    secret_writes: Family<Counter>,
    /// Indexed by [`WritePhase`]: fixed series, no lookup on the write path.
    secret_write_phases: [Seconds; WritePhase::ALL.len()],
    service_account_writes: Family<Counter>,
    api_requests: Family<Counter>,
    registry_checks: Family<Counter>,
    registry_verified: Family<Gauge>,
    certificate_expiry: Family<Gauge>,
    leader: Gauge,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            token_fetches: Family::new(
                "token_fetches_total",
                "ECR authorization token fetches, by result.",
                &["result"],
            ),
            token_expiry: Family::new(
                "token_expiry_timestamp_seconds",
                "Unix time at which the earliest pull Secret of an ECRPullSecret expires.",
                &["ecrpullsecret"],
            ),
            ready: Family::new(
                "ecrpullsecret_ready",
                "1 while an ECRPullSecret is Ready, else 0.",
                &["ecrpullsecret"],
            ),
            next_refresh: Family::new(
                "next_refresh_timestamp_seconds",
                "Unix time of an ECRPullSecret's next planned refresh; it stays in the past while refreshes fail.",
                &["ecrpullsecret"],
            ),
            reconcile_duration: Family::new(
                "reconcile_duration_seconds",
                "Time spent reconciling one ECRPullSecret, by result.",
                &["result"],
            ),
            queue_depth: Gauge::default(),
            secret_writes: Family::new(
                "secret_writes_total",
                "Pull Secret writes to the Kubernetes API, by operation.",
                &["op"],
            ),
            secret_write_phases: Default::default(),
            service_account_writes: Family::new(
                "service_account_writes_total",
                "ServiceAccount imagePullSecrets changes, by operation.",
                &["op"],
            ),
            api_requests: Family::new(
                "kube_api_requests_total",
                "Kubernetes API requests, by verb and HTTP status code (0: no answer).",
                &["verb", "code"],
            ),
            registry_checks: Family::new(
                "registry_checks_total",
                "Token checks at the registries (GET /v2/), by result: Verified or the RegistryVerified reason.",
                &["result"],
            ),
            registry_verified: Family::new(
                "registry_verified_timestamp_seconds",
                "Unix time at which every registry of an ECRPullSecret last accepted its token.",
                &["ecrpullsecret"],
            ),
            certificate_expiry: Family::new(
                "certificate_expiry_timestamp_seconds",
                "Unix time at which the IAM Roles Anywhere certificate an ECRPullSecret signs with (source roles-anywhere), or the operator's own (source operator), expires.",
                &["ecrpullsecret", "source"],
            ),
            leader: Gauge::default(),
        }
    }

    pub(crate) fn token_fetch(&self, result: &str) {
        self.token_fetches.with(&[result]).inc();
    }

    pub(crate) fn set_ecrpullsecret(
        &self,
        name: &str,
        ready: bool,
        expiry: Option<f64>,
        next_refresh: Option<f64>,
    ) {
        self.ready.with(&[name]).set(if ready { 1.0 } else { 0.0 });
        if let Some(t) = expiry {
            self.token_expiry.with(&[name]).set(t);
        }
        if let Some(t) = next_refresh {
            self.next_refresh.with(&[name]).set(t);
        }
    }

    pub(crate) fn registry_check(&self, result: &str) {
        self.registry_checks.with(&[result]).inc();
    }

    pub(crate) fn set_registry_verified(&self, name: &str, at: f64) {
        self.registry_verified.with(&[name]).set(at);
    }

    pub(crate) fn set_certificate_expiry(&self, name: &str, source: &str, not_after: f64) {
        self.certificate_expiry.with(&[name, source]).set(not_after);
    }

    pub(crate) fn forget_certificate_expiry(&self, name: &str) {
        self.certificate_expiry.remove(&[name, "roles-anywhere"]);
    }

    pub(crate) fn forget_ecrpullsecret(&self, name: &str) {
        self.forget_certificate_expiry(name);
        self.registry_verified.remove(&[name]);
        self.ready.remove(&[name]);
        self.token_expiry.remove(&[name]);
        self.next_refresh.remove(&[name]);
    }

    pub(crate) fn observe_reconcile(&self, seconds: f64, result: &str) {
        self.reconcile_duration.with(&[result]).observe(seconds);
    }

    pub(crate) fn set_queue_depth(&self, n: usize) {
        self.queue_depth.set(n as f64);
    }

    pub(crate) fn secret_written(&self, op: &str) {
        self.secret_writes.with(&[op]).inc();
    }

    pub(crate) fn secret_write_phase(&self, phase: WritePhase, took: std::time::Duration) {
        self.secret_write_phases[phase as usize].add(took);
    }

    pub(crate) fn service_account_written(&self, op: &str) {
        self.service_account_writes.with(&[op]).inc();
    }

    pub(crate) fn api_request(&self, verb: &str, code: u16) {
        let code = code.to_string();
        self.api_requests.with(&[verb, &code]).inc();
    }

    pub(crate) fn set_leader(&self, is_leader: bool) {
        self.leader.set(if is_leader { 1.0 } else { 0.0 });
    }

    /// Text exposition format 0.0.4: `# HELP`, `# TYPE`, then one line per sample.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        write_header(
            &mut out,
            "build_info",
            "Build of the running binary; the value is always 1.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "{PREFIX}build_info{{version=\"{}\"}} 1",
            escape_label_value(env!("CARGO_PKG_VERSION"))
        );
        self.token_fetches.render(&mut out);
        self.token_expiry.render(&mut out);
        self.ready.render(&mut out);
        self.next_refresh.render(&mut out);
        self.certificate_expiry.render(&mut out);
        self.reconcile_duration.render(&mut out);
        write_header(
            &mut out,
            "queue_depth",
            "Keys waiting in the work queue.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "{PREFIX}queue_depth {}",
            format_value(self.queue_depth.get())
        );
        self.secret_writes.render(&mut out);
        write_header(
            &mut out,
            "secret_write_seconds_total",
            "Time pull Secret creates and updates spent, by phase: build (the request body), send (request out until the answer is read; mostly waiting), parse (the answer), cache (the answer into the watch cache).",
            "counter",
        );
        for phase in WritePhase::ALL {
            let _ = writeln!(
                out,
                "{PREFIX}secret_write_seconds_total{{phase=\"{}\"}} {}",
                phase.label(),
                format_value(self.secret_write_phases[phase as usize].get())
            );
        }
        self.service_account_writes.render(&mut out);
        self.api_requests.render(&mut out);
        self.registry_checks.render(&mut out);
        self.registry_verified.render(&mut out);
        write_header(
            &mut out,
            "is_leader",
            "1 while this replica holds the leader Lease, else 0.",
            "gauge",
        );
        let _ = writeln!(out, "{PREFIX}is_leader {}", format_value(self.leader.get()));
        out
    }
}

/// What the runtime reports, forwarded to the families that exist. Only leadership has
/// one; watch and reconcile counts are left to the runtime's own stats, so the exposition
/// (which the alerts and the dashboard read) stays exactly as documented.
impl crate::runtime::RuntimeMetrics for Registry {
    fn leader(&self, leading: bool) {
        self.set_leader(leading);
    }
}

// === metric kinds ===

/// What a family needs from its series: a TYPE and the sample lines.
trait Metric: Send + Sync {
    const TYPE: &'static str;
    fn fresh() -> Self;
    /// Writes this series' samples; `labels` is the rendered `k="v",...` list (maybe empty).
    fn render(&self, out: &mut String, name: &str, labels: &str);
}

/// Monotonic count.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Metric for Counter {
    const TYPE: &'static str = "counter";
    fn fresh() -> Self {
        Self::default()
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let _ = writeln!(out, "{name}{} {}", braces(labels), self.get());
    }
}

/// A monotonic sum of durations, kept in nanoseconds, shown in seconds.
#[derive(Debug, Default)]
pub(crate) struct Seconds(AtomicU64);

impl Seconds {
    pub(crate) fn add(&self, d: std::time::Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// Where a pull Secret write spends its time, so a reader of /metrics (and `make bench`)
/// sees how far each part is from its floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WritePhase {
    /// Serialising the request body.
    Build,
    /// From the request out until the whole answer is read: the server's time, the
    /// network's and hyper's, not only this process's CPU.
    Send,
    /// Parsing the answer.
    Parse,
    /// Projecting the answer into the watch cache.
    Cache,
}

impl WritePhase {
    pub(crate) const ALL: [WritePhase; 4] = [
        WritePhase::Build,
        WritePhase::Send,
        WritePhase::Parse,
        WritePhase::Cache,
    ];

    fn label(self) -> &'static str {
        match self {
            WritePhase::Build => "build",
            WritePhase::Send => "send",
            WritePhase::Parse => "parse",
            WritePhase::Cache => "cache",
        }
    }
}

/// A value that goes up and down, stored as the bits of an `f64`.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicU64);

impl Gauge {
    pub(crate) fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl Metric for Gauge {
    const TYPE: &'static str = "gauge";
    fn fresh() -> Self {
        Self::default()
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let _ = writeln!(out, "{name}{} {}", braces(labels), format_value(self.get()));
    }
}

/// Fixed-bucket histogram. Buckets are stored per bucket (not cumulative) and summed on
/// render, so `_count` always equals the `+Inf` bucket even under concurrent updates.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus the `+Inf` overflow bucket.
    buckets: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub(crate) fn observe(&self, v: f64) {
        // NaN would poison the sum forever; it also has no bucket.
        if v.is_nan() {
            return;
        }
        let idx = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(idx) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let mut cur = self.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self.sum_bits.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }
}

impl Metric for Histogram {
    const TYPE: &'static str = "histogram";
    fn fresh() -> Self {
        Self::new(RECONCILE_BUCKETS)
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => format_value(*b),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = f64::from_bits(self.sum_bits.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), format_value(sum));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

// === Family ===

/// Series of one metric keyed by their label values (one value per label name).
struct Family<M> {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, Arc<M>>>,
}

impl<M: Metric> Family<M> {
    fn new(name: &'static str, help: &'static str, label_names: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            label_names,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    fn with(&self, values: &[&str]) -> Arc<M> {
        let mut key: Vec<String> = values.iter().map(|v| (*v).to_string()).collect();
        // A caller passing the wrong arity is a bug; pad or cut so the output stays valid.
        key.resize(self.label_names.len(), String::new());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if !series.contains_key(&key) && series.len() >= MAX_SERIES {
            key = vec![OVERFLOW_VALUE.to_string(); self.label_names.len()];
        }
        series
            .entry(key)
            .or_insert_with(|| Arc::new(M::fresh()))
            .clone()
    }

    fn remove(&self, values: &[&str]) {
        let mut key: Vec<String> = values.iter().map(|v| (*v).to_string()).collect();
        key.resize(self.label_names.len(), String::new());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.remove(&key);
    }

    fn render(&self, out: &mut String) {
        write_header(out, self.name, self.help, M::TYPE);
        let full_name = format!("{PREFIX}{}", self.name);
        // Snapshot the series so the lock is not held while formatting.
        let snapshot: Vec<(Vec<String>, Arc<M>)> = {
            let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
            series.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        for (values, metric) in snapshot {
            let labels = self
                .label_names
                .iter()
                .zip(values.iter())
                .map(|(n, v)| format!("{n}=\"{}\"", escape_label_value(v)))
                .collect::<Vec<_>>()
                .join(",");
            metric.render(out, &full_name, &labels);
        }
    }
}

// === text format helpers ===

fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// Label values escape `\`, `"` and newline, as the exposition format requires.
pub(crate) fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes `\` and newline (quotes stay as they are).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Floats as Prometheus parses them: `+Inf`, `-Inf`, `NaN`, else Rust's shortest form.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed sample line.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A strict parser of the text format, written from the spec, to read back what we render.
    fn parse(text: &str) -> Result<(BTreeMap<String, String>, Vec<Sample>), String> {
        let mut types = BTreeMap::new();
        let mut helps = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').ok_or("HELP without text")?;
                if helps.insert(name.to_string(), help.to_string()).is_some() {
                    return Err(format!("duplicate HELP for {name}"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or("TYPE without kind")?;
                if !["counter", "gauge", "histogram"].contains(&kind) {
                    return Err(format!("unknown type {kind}"));
                }
                if types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(format!("duplicate TYPE for {name}"));
                }
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                return Err(format!("unexpected line {line:?}"));
            }
            samples.push(parse_sample(line)?);
        }
        for s in &samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suf| {
                    s.name
                        .strip_suffix(suf)
                        .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(&s.name);
            if !types.contains_key(family) || !helps.contains_key(family) {
                return Err(format!("sample {} has no TYPE/HELP", s.name));
            }
        }
        Ok((types, samples))
    }

    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..name_end];
        if !valid_name(name) {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            loop {
                // label name
                let start = chars.peek().map(|(i, _)| *i).ok_or("eof in labels")?;
                if r[start..].starts_with('}') {
                    rest = &r[start + 1..];
                    break;
                }
                let eq = r[start..].find('=').ok_or("label without =")? + start;
                let lname = &r[start..eq];
                if !valid_name(lname) {
                    return Err(format!("bad label name {lname:?}"));
                }
                while chars.peek().map(|(i, _)| *i <= eq) == Some(true) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err("label value not quoted".into());
                }
                let mut value = String::new();
                loop {
                    match chars.next().ok_or("eof in label value")?.1 {
                        '\\' => match chars.next().ok_or("eof after backslash")?.1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => return Err(format!("bad escape \\{c}")),
                        },
                        '"' => break,
                        '\n' => return Err("raw newline in label value".into()),
                        c => value.push(c),
                    }
                }
                labels.push((lname.to_string(), value));
                match chars.peek().map(|(_, c)| *c) {
                    Some(',') => {
                        chars.next();
                    }
                    Some('}') => {}
                    other => return Err(format!("unexpected {other:?} after label")),
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before value")?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse::<f64>()
                .map_err(|e| format!("bad value {v:?}: {e}"))?,
        };
        Ok(Sample {
            name: name.to_string(),
            labels,
            value,
        })
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        samples.iter().find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v))
        })
    }

    #[test]
    fn empty_registry_renders_valid_text_with_every_family_typed() {
        let r = Registry::new();
        let (types, samples) = parse(&r.render()).unwrap();
        assert_eq!(
            types.get("ecr_creds_refresher_reconcile_duration_seconds"),
            Some(&"histogram".to_string())
        );
        assert_eq!(
            types.get("ecr_creds_refresher_token_fetches_total"),
            Some(&"counter".to_string())
        );
        assert!(types.keys().all(|k| k.starts_with(PREFIX)));
        assert_eq!(
            find(&samples, "ecr_creds_refresher_is_leader", &[]).map(|s| s.value),
            Some(0.0)
        );
        assert_eq!(
            find(
                &samples,
                "ecr_creds_refresher_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            )
            .map(|s| s.value),
            Some(1.0)
        );
    }

    #[test]
    fn write_phases_add_up_in_seconds_per_phase() {
        let r = Registry::new();
        r.secret_write_phase(WritePhase::Parse, std::time::Duration::from_micros(1500));
        r.secret_write_phase(WritePhase::Parse, std::time::Duration::from_micros(500));
        r.secret_write_phase(WritePhase::Build, std::time::Duration::from_millis(3));
        let (types, samples) = parse(&r.render()).unwrap();
        let name = "ecr_creds_refresher_secret_write_seconds_total";
        assert_eq!(types.get(name), Some(&"counter".to_string()));
        let value = |phase| find(&samples, name, &[("phase", phase)]).map(|s| s.value);
        assert_eq!(value("parse"), Some(0.002));
        assert_eq!(value("build"), Some(0.003));
        assert_eq!(
            value("send"),
            Some(0.0),
            "every phase is shown from the start"
        );
        assert_eq!(value("cache"), Some(0.0));
    }

    #[test]
    fn counters_end_in_total_and_count_each_call_per_label_set() {
        let r = Registry::new();
        r.token_fetch("success");
        r.token_fetch("success");
        r.token_fetch("error");
        r.secret_written("create");
        r.service_account_written("add");
        r.api_request("get", 200);
        r.api_request("get", 200);
        r.api_request("put", 409);
        let (types, samples) = parse(&r.render()).unwrap();
        for (name, kind) in &types {
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        }
        let v = |n: &str, l: &[(&str, &str)]| find(&samples, n, l).map(|s| s.value);
        assert_eq!(
            v(
                "ecr_creds_refresher_token_fetches_total",
                &[("result", "success")]
            ),
            Some(2.0)
        );
        assert_eq!(
            v(
                "ecr_creds_refresher_token_fetches_total",
                &[("result", "error")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "ecr_creds_refresher_secret_writes_total",
                &[("op", "create")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "ecr_creds_refresher_service_account_writes_total",
                &[("op", "add")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "ecr_creds_refresher_kube_api_requests_total",
                &[("verb", "get"), ("code", "200")]
            ),
            Some(2.0)
        );
        assert_eq!(
            v(
                "ecr_creds_refresher_kube_api_requests_total",
                &[("verb", "put"), ("code", "409")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn gauges_hold_the_last_value_and_a_deleted_crs_series_disappear() {
        let r = Registry::new();
        r.set_ecrpullsecret("prod", true, Some(1_764_190_800.5), Some(10.0));
        r.set_ecrpullsecret("dev", false, Some(1.0), None);
        r.set_ecrpullsecret("dev", false, Some(2.0), None);
        r.set_queue_depth(7);
        r.set_leader(true);
        let (_, samples) = parse(&r.render()).unwrap();
        let name = "ecr_creds_refresher_token_expiry_timestamp_seconds";
        assert_eq!(
            find(&samples, name, &[("ecrpullsecret", "prod")]).map(|s| s.value),
            Some(1_764_190_800.5)
        );
        assert_eq!(
            find(&samples, name, &[("ecrpullsecret", "dev")]).map(|s| s.value),
            Some(2.0)
        );
        let ready = "ecr_creds_refresher_ecrpullsecret_ready";
        assert_eq!(
            find(&samples, ready, &[("ecrpullsecret", "dev")]).map(|s| s.value),
            Some(0.0)
        );
        assert_eq!(
            find(&samples, "ecr_creds_refresher_queue_depth", &[]).map(|s| s.value),
            Some(7.0)
        );
        assert_eq!(
            find(&samples, "ecr_creds_refresher_is_leader", &[]).map(|s| s.value),
            Some(1.0)
        );

        r.forget_ecrpullsecret("dev");
        let (_, samples) = parse(&r.render()).unwrap();
        for family in [
            name,
            ready,
            "ecr_creds_refresher_next_refresh_timestamp_seconds",
        ] {
            assert!(
                find(&samples, family, &[("ecrpullsecret", "dev")]).is_none(),
                "{family} still has the deleted CR"
            );
        }
        assert!(find(&samples, name, &[("ecrpullsecret", "prod")]).is_some());
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_equals_inf_bucket() {
        let r = Registry::new();
        for s in [0.001, 0.02, 0.02, 0.7, 100.0] {
            r.observe_reconcile(s, "success");
        }
        r.observe_reconcile(f64::NAN, "success");
        let (_, samples) = parse(&r.render()).unwrap();
        let name = "ecr_creds_refresher_reconcile_duration_seconds";
        let bucket = |le: &str| {
            find(
                &samples,
                &format!("{name}_bucket"),
                &[("result", "success"), ("le", le)],
            )
            .map(|s| s.value)
        };
        assert_eq!(bucket("0.005"), Some(1.0));
        assert_eq!(bucket("0.01"), Some(1.0));
        assert_eq!(bucket("0.025"), Some(3.0));
        assert_eq!(bucket("1"), Some(4.0));
        assert_eq!(bucket("60"), Some(4.0));
        assert_eq!(bucket("+Inf"), Some(5.0));
        let count = find(&samples, &format!("{name}_count"), &[("result", "success")]);
        assert_eq!(count.map(|s| s.value), Some(5.0));
        let sum = find(&samples, &format!("{name}_sum"), &[("result", "success")])
            .map(|s| s.value)
            .unwrap();
        assert!((sum - 100.741).abs() < 1e-9, "{sum}");
        // Bucket counts never decrease along `le`.
        let buckets: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .map(|s| s.value)
            .collect();
        assert_eq!(buckets.len(), RECONCILE_BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn label_values_with_quotes_backslashes_and_newlines_round_trip() {
        let r = Registry::new();
        let nasty = "a\"b\\c\nd}e,f=g";
        r.token_fetch(nasty);
        let text = r.render();
        assert!(!text.contains("c\nd"), "raw newline leaked into output");
        let (_, samples) = parse(&text).unwrap();
        assert!(find(
            &samples,
            "ecr_creds_refresher_token_fetches_total",
            &[("result", nasty)]
        )
        .is_some());
    }

    #[test]
    fn series_past_the_cap_fold_into_other() {
        let r = Registry::new();
        for i in 0..MAX_SERIES + 5 {
            r.secret_written(&format!("op{i}"));
        }
        let (_, samples) = parse(&r.render()).unwrap();
        let name = "ecr_creds_refresher_secret_writes_total";
        let n = samples.iter().filter(|s| s.name == name).count();
        assert_eq!(n, MAX_SERIES + 1);
        assert_eq!(
            find(&samples, name, &[("op", "other")]).map(|s| s.value),
            Some(5.0)
        );
    }

    #[test]
    fn special_float_values_use_prometheus_spelling() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.025), "0.025");
    }

    #[test]
    fn the_runtime_reports_leadership_and_nothing_else_through_its_handle() {
        use crate::runtime::RuntimeMetrics;
        let r = Registry::new();
        r.leader(true);
        let (_, samples) = parse(&r.render()).unwrap();
        assert_eq!(
            find(&samples, "ecr_creds_refresher_is_leader", &[]).map(|s| s.value),
            Some(1.0)
        );
        // Reports without a family of their own leave the exposition as it was.
        let before = r.render();
        r.watch_listed("secrets");
        r.watch_event("secrets");
        r.watch_failed("secrets", true);
        r.reconcile_started("ecrpullsecret");
        r.reconcile_finished("ecrpullsecret", false);
        assert_eq!(r.render(), before);
    }

    proptest::proptest! {
        #[test]
        fn any_label_value_parses_back_to_itself(value in "(?s).*") {
            let r = Registry::new();
            r.set_ecrpullsecret(&value, true, Some(3.5), None);
            let (_, samples) = parse(&r.render()).unwrap();
            let s = find(
                &samples,
                "ecr_creds_refresher_token_expiry_timestamp_seconds",
                &[("ecrpullsecret", &value)],
            );
            proptest::prop_assert_eq!(s.map(|s| s.value), Some(3.5));
        }
    }
}
