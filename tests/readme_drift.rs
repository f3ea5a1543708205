//! README and `--help` cannot drift from the binary. The lists come from the source, not
//! from a copy here, so a reason, flag or environment variable added anywhere (by any
//! change) fails these tests until README and `--help` name it:
//!
//! - condition reasons: the `Reason` enum (src/reconcile/vocab.rs), the registry
//!   `Verdict` (src/reconcile/decide/verdict.rs) and `VERIFY_DISABLED`;
//! - flags: every `"--flag" =>` arm of src/config.rs;
//! - environment: `aws::env::VARIABLES` (all the `aws` module reads) and every
//!   `var("…")`, `nonempty("…")` and `lookup("…")` outside tests under src/.
//!
//! And the other way: a flag README's table or `--help` names must be one the binary
//! parses. `--version` says version, commit and target; a startup error is one line.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_ecr-creds-refresher");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A source file without its `#[cfg(test)] mod tests`: names only tests use do not count.
/// (A lone `#[cfg(test)]` helper earlier in a file does not cut the rest off.)
fn source(rel: &str) -> String {
    let text = read(rel);
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Every `.rs` file under `dir`, relative to the crate root.
fn rust_files(dir: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
        if e.path().is_dir() {
            rust_files(&rel, out);
        } else if rel.ends_with(".rs") && !rel.ends_with("/tests.rs") && !is_props(&rel) {
            out.push(rel);
        }
    }
}

/// Test code besides `tests.rs`: a property suite (`props.rs`, `props_*.rs`) or a file
/// under a `tests/` folder.
fn is_props(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "props.rs" || name.starts_with("props_") || rel.contains("/tests/")
}

/// The string literal right after each `prefix` in `text`.
fn literals_after(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest.find('"')?;
            Some(rest[..end].to_string())
        })
        .collect()
}

/// README's section under `## {title}`, up to the next `## `.
fn readme_section(title: &str) -> String {
    let readme = read("README.md");
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has no section ## {title}"));
    let body = &readme[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    body[..end].to_string()
}

/// `word` occurs in `text` as a whole word (the next and previous characters cannot
/// continue a flag or variable name).
fn names(text: &str, word: &str) -> bool {
    let cont = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(cont) && !after.is_some_and(cont)
    })
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("RUST_LOG", "info")
        .output()
        .expect("the operator binary runs")
}

fn help() -> String {
    let out = run(&["--help"]);
    assert!(out.status.success(), "--help exits 0");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `Enum::Variant => "string"` arms of `as_str`, with the enum's variants to prove the
/// parse saw them all.
fn enum_strings(rel: &str, name: &str) -> BTreeSet<String> {
    let text = source(rel);
    let decl = format!("pub(crate) enum {name} {{");
    let start = text
        .find(&decl)
        .unwrap_or_else(|| panic!("{rel}: no `{decl}`"));
    let body = &text[start + decl.len()..];
    let body = &body[..body.find('}').expect("enum ends")];
    let variants: BTreeSet<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with('#'))
        .map(|l| l.trim_end_matches(',').to_string())
        .collect();
    let mut strings = BTreeSet::new();
    for v in &variants {
        let arm = literals_after(&text, &format!("{name}::{v} => \""));
        assert_eq!(
            arm.len(),
            1,
            "{rel}: {name}::{v} has no single `=> \"…\"` arm"
        );
        strings.insert(arm[0].clone());
    }
    assert!(!strings.is_empty(), "{rel}: no {name} variants found");
    strings
}

#[test]
fn readme_names_every_ready_and_registry_verified_reason() {
    let mut reasons = enum_strings("src/reconcile/vocab.rs", "Reason");
    reasons.extend(enum_strings("src/reconcile/decide/verdict.rs", "Verdict"));
    reasons.extend(literals_after(
        &source("src/reconcile/decide/status.rs"),
        "VERIFY_DISABLED: &str = \"",
    ));
    assert!(reasons.contains("TokenFetched") && reasons.contains("Disabled"));
    let section = readme_section("The ECRPullSecret resource");
    let missing: Vec<_> = reasons
        .iter()
        .filter(|r| !section.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's \"The ECRPullSecret resource\" does not name these condition reasons: {missing:?}"
    );
}

/// Every flag the parser matches on.
fn parsed_flags() -> BTreeSet<String> {
    let text = source("src/config.rs");
    let flags: BTreeSet<String> = text
        .lines()
        .filter(|l| l.contains("=>"))
        .flat_map(|l| literals_after(l, "\"-"))
        .map(|f| format!("-{f}"))
        .filter(|f| {
            let name = f.trim_start_matches('-');
            name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .collect();
    assert!(flags.contains("--api-server") && flags.contains("--version"));
    flags
}

/// The `--flag` tokens of a text.
fn flag_tokens(text: &str) -> BTreeSet<String> {
    text.match_indices("--")
        .filter(|(i, _)| {
            *i == 0 || !text[..*i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                .unwrap_or(rest.len());
            format!("--{}", &rest[..end])
        })
        .filter(|f| f.len() > 3)
        .collect()
}

#[test]
fn readme_and_help_name_every_flag_and_only_real_ones() {
    let flags = parsed_flags();
    let help = help();
    let config = readme_section("Configuration");
    let table: String = config
        .lines()
        .filter(|l| l.starts_with("| `-"))
        .collect::<Vec<_>>()
        .join("\n");
    for flag in &flags {
        assert!(names(&help, flag), "--help does not name {flag}");
        assert!(
            names(&table, flag),
            "README's Configuration flag table does not name {flag}"
        );
    }
    for (what, text) in [("--help", help.as_str()), ("README's flag table", &table)] {
        let unknown: Vec<_> = flag_tokens(text)
            .into_iter()
            .filter(|f| !flags.contains(f))
            .collect();
        assert!(
            unknown.is_empty(),
            "{what} names flags the binary does not parse: {unknown:?}"
        );
    }
}

/// Every environment variable the binary reads.
fn read_variables() -> BTreeSet<String> {
    // `VARIABLES` in src/aws/env.rs: the table the AWS settings are read through.
    let env_rs = source("src/aws/env.rs");
    let table = env_rs
        .split_once("pub(crate) const VARIABLES: &[&str] = &[")
        .and_then(|(_, rest)| rest.split_once("];"))
        .map(|(table, _)| table)
        .expect("src/aws/env.rs has the VARIABLES table");
    let mut vars: BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.strip_suffix("\","))
        .map(str::to_ascii_uppercase)
        .collect();
    assert!(vars.len() > 20, "the VARIABLES table read: {vars:?}");
    let mut files = Vec::new();
    rust_files("src", &mut files);
    for rel in files {
        let text = source(&rel);
        for prefix in ["var(\"", "nonempty(\"", "lookup(\""] {
            for name in literals_after(&text, prefix) {
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    vars.insert(name.to_ascii_uppercase());
                }
            }
        }
    }
    for known in [
        "AWS_REGION",
        "POD_NAMESPACE",
        "RUST_LOG",
        "KUBERNETES_SERVICE_HOST",
    ] {
        assert!(
            vars.contains(known),
            "the source scan missed {known}: {vars:?}"
        );
    }
    vars
}

#[test]
fn readme_and_help_name_every_environment_variable_the_binary_reads() {
    let vars = read_variables();
    let help = help();
    let config = readme_section("Configuration");
    let missing_help: Vec<_> = vars.iter().filter(|v| !names(&help, v)).collect();
    let missing_readme: Vec<_> = vars
        .iter()
        .filter(|v| !config.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing_help.is_empty(),
        "--help does not name {missing_help:?}"
    );
    assert!(
        missing_readme.is_empty(),
        "README's Configuration does not name {missing_readme:?}"
    );
}

#[test]
fn version_prints_the_version_the_commit_and_the_target() {
    for flag in ["--version", "-V"] {
        let out = run(&[flag]);
        assert!(out.status.success());
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let want = format!("ecr-creds-refresher {} (commit ", env!("CARGO_PKG_VERSION"));
        assert!(line.starts_with(&want), "{flag}: {line:?}");
        let rest = &line[want.len()..];
        let (commit, target) = rest
            .trim_end_matches(')')
            .split_once(", target ")
            .unwrap_or_else(|| panic!("{flag}: no target in {line:?}"));
        assert!(
            commit == "unknown"
                || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "{flag}: commit {commit:?}"
        );
        assert!(
            target.starts_with(std::env::consts::ARCH) && target.contains(std::env::consts::OS),
            "{flag}: target {target:?}"
        );
    }
}

#[test]
fn a_startup_error_is_printed_once() {
    // A flag error (before logging starts) and a failure after it (no API server).
    let cases: [&[&str]; 2] = [
        &["--bogus"],
        &[
            "--api-server",
            "http://127.0.0.1:9",
            "--health-probe-bind-address",
            "0",
            "--metrics-bind-address",
            "0",
        ],
    ];
    for args in cases {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<_> = stderr
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("ecr-creds-refresher:"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{args:?}: want one error line, got:\n{stderr}"
        );
    }
}

/// The fenced blocks of `lang` in `text`, dedented (README nests them in a list).
fn fenced(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut current {
            None if trimmed == format!("```{lang}") => current = Some((indent, String::new())),
            Some(_) if trimmed == "```" => blocks.extend(current.take().map(|(_, b)| b)),
            Some((cut, block)) => {
                block.push_str(line.get(*cut..).unwrap_or_default());
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// "Edge clusters outside AWS": the CR passes the CRD the emulated API server enforces
/// (the operator's own validator: `src/reconcile/decide/rolesanywhere.rs`); the
/// cert-manager Certificate writes the Secret the CR
/// names, grants it to that CR, and asks for a key and usages the signer supports; the
/// role grants name the CR's role; the trust policy trusts Roles Anywhere for the three
/// actions, pinned to the CR's trust anchor.
#[tokio::test]
async fn readme_edge_cluster_examples_validate_and_agree() {
    use serde_json::Value;

    let section = readme_section("Edge clusters outside AWS");
    let mut docs: Vec<Value> = Vec::new();
    for block in fenced(&section, "yaml") {
        for doc in serde_yaml::Deserializer::from_str(&block) {
            docs.push(serde::Deserialize::deserialize(doc).expect("README YAML parses"));
        }
    }
    let kind = |k: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("README shows no {k}"))
    };
    let (cr_doc, certificate, grants) = (
        kind("ECRPullSecret"),
        kind("Certificate"),
        kind("ConfigMap"),
    );

    let ra = &cr_doc["spec"]["aws"]["rolesAnywhere"];
    assert!(ra.is_object(), "spec.aws.rolesAnywhere");
    let k8s = emulators::k8s::K8sEmulator::start(emulators::k8s::EmulatorConfig::default())
        .await
        .unwrap();
    k8s.apply("ecrpullsecrets", cr_doc.clone())
        .expect("the CRD's schema admits it");
    // And the schema is really checked: a malformed trust anchor is refused.
    let mut bad = cr_doc.clone();
    bad["metadata"]["name"] = "edge-bad".into();
    bad["spec"]["aws"]["rolesAnywhere"]["trustAnchorArn"] = "arn:aws:iam::1:role/x".into();
    assert!(
        k8s.apply("ecrpullsecrets", bad).is_err(),
        "the schema is enforced"
    );

    let name = cr_doc["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    let spec = &certificate["spec"];
    assert_eq!(spec["secretName"], ra["certificateSecretRef"]["name"]);
    assert_eq!(
        certificate["metadata"]["namespace"],
        ra["certificateSecretRef"]["namespace"]
    );
    let granted = spec["secretTemplate"]["annotations"]["ecr.creds.dev/allowed-ecrpullsecrets"]
        .as_str()
        .unwrap_or_default();
    assert!(granted.split(',').any(|g| g.trim() == name), "{granted}");
    let key = &spec["privateKey"];
    let supported = (key["algorithm"] == "ECDSA" && key["size"] == 256)
        || (key["algorithm"] == "RSA" && key["size"].as_u64().is_some_and(|s| s >= 2048));
    assert!(supported, "a key the signer supports: {key}");
    for usage in ["digital signature", "client auth"] {
        assert!(
            spec["usages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u == usage),
            "usage {usage}"
        );
    }

    assert_eq!(
        grants["metadata"]["name"],
        "ecr-creds-refresher-role-grants"
    );
    let roles = grants["data"][&name].as_str().unwrap_or_default();
    assert!(
        roles.split(',').any(|r| ra["roleArn"] == r.trim()),
        "{roles}"
    );

    let policies = fenced(&section, "json");
    let policy: Value = serde_json::from_str(&policies[0]).expect("the trust policy is JSON");
    let statement = &policy["Statement"][0];
    assert_eq!(
        statement["Principal"]["Service"],
        "rolesanywhere.amazonaws.com"
    );
    let actions: BTreeSet<&str> = statement["Action"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from(["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"])
    );
    assert_eq!(
        statement["Condition"]["ArnEquals"]["aws:SourceArn"],
        ra["trustAnchorArn"]
    );
}
