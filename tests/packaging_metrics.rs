//! Every metric the shipped alerts and the Grafana dashboard query exists in the
//! exposition of a RUNNING operator binary: a renamed or dropped metric fails here
//! instead of leaving an alert that can never fire or an empty panel. The same live
//! scrape passes Prometheus' own parser and linter (`promtool check metrics`), not only
//! the reader the metrics module's tests wrote for themselves.
//!
//! Sources: deploy/prometheusrule.yaml (the chart's files/prometheusrule.yaml is its
//! byte-identical copy, checked by tests/chart/test.sh) and the chart's dashboard
//! (charts/ecr-creds-refresher/dashboards/ecr-creds-refresher.json).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PREFIX: &str = "ecr_creds_refresher_";
/// Series Prometheus makes itself for every target; the operator cannot export them.
const PROMETHEUS_SERIES: &[&str] = &["up"];
/// Histogram series names: the family name plus one of these.
const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];
const WAIT: Duration = Duration::from_secs(20);

/// Metric families of an exposition, name to type, from its `# TYPE` lines (a family is
/// typed even before it has a sample).
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// The metric names a PromQL expression (or a Grafana `label_values(...)` query) uses:
/// identifiers starting with the operator's prefix, and Prometheus' own series such as
/// `up`. String literals are skipped, so label values never count.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            // A name right after a digit is part of a number or a duration (`5m`).
            let in_number = start > 0 && chars[start - 1].is_ascii_digit();
            let ident: String = chars[start..i].iter().collect();
            if !in_number
                && (ident.starts_with(PREFIX) || PROMETHEUS_SERIES.contains(&ident.as_str()))
            {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Whether `name` is a series of one of `families`: a family itself, or a histogram's
/// `_bucket`/`_sum`/`_count`.
fn exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    families.contains_key(name)
        || HISTOGRAM_SUFFIXES.iter().any(|suffix| {
            name.strip_suffix(suffix)
                .and_then(|base| families.get(base))
                .is_some_and(|kind| kind == "histogram")
        })
}

/// Every `expr` of a Prometheus rules document (`groups:` at the top, or a
/// PrometheusRule's `spec.groups`), with the alert or record name.
fn rule_exprs(doc: &serde_yaml::Value) -> Vec<(String, String)> {
    let groups = doc
        .get("spec")
        .and_then(|s| s.get("groups"))
        .or_else(|| doc.get("groups"))
        .and_then(|g| g.as_sequence())
        .expect("no groups");
    groups
        .iter()
        .flat_map(|g| {
            g["rules"]
                .as_sequence()
                .expect("group without rules")
                .iter()
        })
        .map(|r| {
            let name = r
                .get("alert")
                .or_else(|| r.get("record"))
                .expect("rule without name");
            (
                format!("rule {}", name.as_str().unwrap()),
                r["expr"].as_str().expect("rule without expr").to_string(),
            )
        })
        .collect()
}

/// Every query of a Grafana dashboard: panel targets (rows included) and query variables.
fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            panels(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    let title = p["title"].as_str().unwrap_or("?");
                    out.push((format!("panel {title:?}"), expr.to_string()));
                }
            }
        }
    }
    let mut out = Vec::new();
    panels(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]
            .get("query")
            .and_then(Value::as_str)
            .or_else(|| v["query"].as_str());
        if let (Some(q), Some("query")) = (q, v["type"].as_str()) {
            let name = v["name"].as_str().unwrap_or("?");
            out.push((format!("variable {name:?}"), q.to_string()));
        }
    }
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// (where, name) for every metric name the queries use that `families` lacks.
fn missing(
    queries: &[(String, String)],
    families: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    queries
        .iter()
        .flat_map(|(at, expr)| metric_names(expr).into_iter().map(move |n| (at.clone(), n)))
        .filter(|(_, n)| !PROMETHEUS_SERIES.contains(&n.as_str()) && !exported(n, families))
        .collect()
}

/// `promtool check metrics` over `exposition`: Prometheus' text parser and its linter
/// (HELP on every family, counters named `_total`, ...). Err with promtool's words.
fn promtool_check_metrics(exposition: &str) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `make deps` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}): {said}", out.status))
    }
}

#[test]
fn promtool_refuses_what_prometheus_could_not_scrape_or_would_lint() {
    let good = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"b\"} 1\n";
    assert_eq!(promtool_check_metrics(good), Ok(()));
    for bad in [
        // A TYPE after the family's samples: Prometheus' parser refuses the scrape.
        "# HELP x_total Things.\nx_total 1\n# TYPE x_total counter\n",
        "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"b} 1\n",
        "# TYPE x counter\nx 1\n",
    ] {
        assert!(promtool_check_metrics(bad).is_err(), "passed: {bad:?}");
    }
}

#[test]
fn metric_names_are_parsed_from_promql() {
    let expr = r#"histogram_quantile(0.9, sum by (le) (rate(ecr_creds_refresher_reconcile_duration_seconds_bucket{job=~"$job", x="ecr_creds_refresher_in_a_string"}[5m])))
        - time() < 2 * 3600 unless absent(up{job=~".*ecr-creds-refresher.*"} == 1) or ecr_creds_refresher_is_leader offset 5m"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "ecr_creds_refresher_is_leader",
            "ecr_creds_refresher_reconcile_duration_seconds_bucket",
            "up"
        ]
    );
    assert_eq!(
        metric_names("label_values(ecr_creds_refresher_build_info, job)"),
        BTreeSet::from(["ecr_creds_refresher_build_info".to_string()])
    );
}

#[test]
fn the_check_rejects_names_the_exposition_lacks() {
    let fams = families(
        "# HELP ecr_creds_refresher_x_seconds h\n# TYPE ecr_creds_refresher_x_seconds histogram\n\
         # HELP ecr_creds_refresher_depth g\n# TYPE ecr_creds_refresher_depth gauge\n\
         ecr_creds_refresher_depth 0\n",
    );
    let q = |e: &str| vec![("q".to_string(), e.to_string())];
    assert!(missing(&q("rate(ecr_creds_refresher_x_seconds_count[5m])"), &fams).is_empty());
    assert!(missing(&q("ecr_creds_refresher_depth + up"), &fams).is_empty());
    // A typo, a histogram suffix on a gauge, a leader metric under its README name.
    for bad in [
        "ecr_creds_refresher_dpeth",
        "ecr_creds_refresher_depth_count",
        "ecr_creds_refresher_leader",
    ] {
        assert_eq!(
            missing(&q(bad), &fams),
            [("q".to_string(), bad.to_string())]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_alerts_and_the_dashboard_is_exported_by_the_binary() {
    let (k8s, aws) = emulators(&["app-1"]).await;
    apply_cr(
        &k8s,
        "main",
        json!({"secretName": "ecr-pull", "namespaces": ["app-*"], "registries": [registry(REGION)]}),
    );
    let op = operator("pod-a", k8s.url(), &aws).spawn().unwrap();
    // A reconciled CR: every family has samples by now (they are typed before, too).
    wait_until("CR Ready", WAIT, || {
        k8s.get("ecrpullsecrets", None, "main")
            .is_some_and(|cr| is_ready(&cr))
    })
    .await;
    let metrics = op.metrics_addr.expect("metrics served");
    let exposition = poll(POLL * 200, POLL, async || {
        let answer = get(metrics, "/metrics").await.ok()?;
        (answer.status == 200).then(|| answer.text())
    })
    .await
    .unwrap_or_else(|| panic!("no /metrics from the binary:\n{}", op.log()));
    promtool_check_metrics(&exposition).unwrap_or_else(|e| panic!("{e}\n{exposition}"));
    let fams = families(&exposition);
    assert!(
        fams.keys().all(|n| n.starts_with(PREFIX)) && fams.len() >= 8,
        "{exposition}"
    );

    let rules_doc: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheusrule.yaml")).unwrap();
    let rules = rule_exprs(&rules_doc);
    let dash: Value = serde_json::from_str(&read(
        "charts/ecr-creds-refresher/dashboards/ecr-creds-refresher.json",
    ))
    .unwrap();
    let dashboard = dashboard_exprs(&dash);
    assert!(rules.len() >= 4, "{rules:?}");
    assert!(dashboard.len() >= 8, "{dashboard:?}");
    let used: BTreeSet<String> = rules
        .iter()
        .chain(&dashboard)
        .flat_map(|(_, e)| metric_names(e))
        .collect();
    println!("metrics used by the alerts and the dashboard: {used:?}");
    assert!(
        used.contains("up"),
        "the absent alert's `up` was not parsed"
    );

    let bad: Vec<_> = missing(&rules, &fams)
        .into_iter()
        .chain(missing(&dashboard, &fams))
        .collect();
    assert!(
        bad.is_empty(),
        "queried but not exported by the binary: {bad:?}\nexported families: {:?}",
        fams.keys().collect::<Vec<_>>()
    );
}
