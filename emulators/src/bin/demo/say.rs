//! How the demo talks: steps, details, sections, durations, and secrets masked before
//! they are printed.

use std::time::Duration;

use serde_json::Value;

pub(crate) fn step(text: &str) {
    println!("==> {text}");
}

pub(crate) fn detail(text: &str) {
    println!("    {text}");
}

pub(crate) fn section(title: &str) {
    println!("\n--- {title}");
}

pub(crate) fn ms(d: Duration) -> String {
    if d < Duration::from_secs(2) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// First four characters, then stars: enough to see it is there, not enough to use it.
pub(crate) fn mask(s: &str) -> String {
    let head: String = s.chars().take(4).collect();
    format!("{head}****")
}

pub(crate) fn print_map(map: &Value, indent: &str) {
    if let Some(m) = map.as_object() {
        for (k, v) in m {
            println!("{indent}{k}: {}", v.as_str().unwrap_or(&v.to_string()));
        }
    }
}
