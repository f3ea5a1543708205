//! Properties of the watch-stream framing: chunk boundaries are not event boundaries, so
//! the events decoded from a stream must not depend on how the bytes were split, and no
//! byte sequence a server or proxy might send makes the decoder panic.

use crate::k8s::types::{Namespace, WatchEvent};
use crate::k8s::watch::{decode_event, LineDecoder};
use proptest::prelude::*;

/// One decoded line: the event, or the error rendered (errors are not comparable).
type Outcome = Result<WatchEvent<Namespace>, String>;

/// Feeds `stream` cut at `cuts` and decodes every complete line.
fn decode_split(stream: &[u8], cuts: &[usize]) -> Vec<Outcome> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(stream.len());
    let mut d = LineDecoder::default();
    let mut out = Vec::new();
    let mut from = 0;
    for to in cuts {
        d.push(&stream[from..to]);
        from = to;
        while let Some(line) = d.next_line().expect("lines stay under the limit") {
            out.push(decode_event::<Namespace>(&line).map_err(|e| e.to_string()));
        }
    }
    out
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

/// A well-formed event line of any type, as the API server writes it.
fn event_line() -> impl Strategy<Value = String> {
    prop_oneof![
        (name(), 1u64..1_000_000, prop::sample::select(vec!["ADDED", "MODIFIED", "DELETED"]))
            .prop_map(|(n, rv, t)| serde_json::json!({
                "type": t,
                "object": {"kind": "Namespace", "apiVersion": "v1",
                           "metadata": {"name": n, "resourceVersion": rv.to_string(),
                                        "labels": {"team": "a\u{e9}\"\\\n"}}}
            }).to_string()),
        (1u64..1_000_000).prop_map(|rv| serde_json::json!({
            "type": "BOOKMARK",
            "object": {"kind": "Namespace", "metadata": {"resourceVersion": rv.to_string()}}
        }).to_string()),
        Just(r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (2)","reason":"Expired","code":410}}"#.to_string()),
    ]
}

/// Lines a misbehaving server or proxy might interleave: truncated JSON, HTML, unknown
/// types, wrong shapes, invalid UTF-8, blank lines and CRLF.
fn garbage_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        event_line().prop_flat_map(|l| {
            let n = l.len();
            (Just(l), 0..n).prop_map(|(l, cut)| l.as_bytes()[..cut].to_vec())
        }),
        Just(b"<html><body>502 Bad Gateway</body></html>".to_vec()),
        Just(br#"{"type":"SURPRISE","object":{}}"#.to_vec()),
        Just(br#"{"type":"ADDED","object":[1,2,3]}"#.to_vec()),
        Just(br#"{"type":"BOOKMARK","object":{"metadata":null}}"#.to_vec()),
        Just(br#"{"type":"ERROR","object":"nope"}"#.to_vec()),
        Just(b"\xff\xfe\x00{\"type\"".to_vec()),
        Just(b"   \t ".to_vec()),
        Just(b"{\"type\":\"ADDED\"}\r".to_vec()),
        prop::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            0..64
        ),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => event_line().prop_map(String::into_bytes),
            1 => garbage_line(),
        ],
        0..12,
    )
    .prop_flat_map(|lines| {
        let n = lines.len();
        (Just(lines), prop::collection::vec(any::<bool>(), n))
    })
    .prop_map(|(lines, crlf)| {
        let mut out = Vec::new();
        for (l, cr) in lines.into_iter().zip(crlf) {
            out.extend_from_slice(&l);
            out.extend_from_slice(if cr { b"\r\n" } else { b"\n" });
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn events_do_not_depend_on_chunk_boundaries(
        stream in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let whole = decode_split(&stream, &[]);
        let split = decode_split(&stream, &cuts);
        prop_assert_eq!(&whole, &split);
        // One byte at a time: the worst split a proxy can produce.
        let all: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(&whole, &decode_split(&stream, &all));
    }

    #[test]
    fn well_formed_lines_decode_to_one_event_each_whatever_the_split(
        lines in prop::collection::vec(event_line(), 0..10),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let stream: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
        let out = decode_split(&stream, &cuts);
        prop_assert_eq!(out.len(), lines.len());
        for (o, l) in out.iter().zip(&lines) {
            prop_assert!(o.is_ok(), "{l} failed: {o:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let _ = decode_split(&bytes, &cuts);
        let _ = decode_event::<Namespace>(&bytes);
        let _ = decode_event::<serde_json::Value>(&bytes);
    }

    #[test]
    fn an_unterminated_line_is_kept_not_emitted(line in event_line()) {
        let mut d = LineDecoder::default();
        d.push(line.as_bytes());
        prop_assert_eq!(d.next_line().unwrap(), None);
        prop_assert_eq!(d.remainder(), line.as_bytes());
        d.push(b"\n");
        prop_assert_eq!(d.next_line().unwrap(), Some(line.into_bytes()));
    }

    /// Finding 9: the decoder is the plain split on `\n` (CR dropped, blank lines
    /// skipped), whatever the chunking and however many lines one chunk holds; and the
    /// work it does is linear: a run of blank lines ahead of an event costs one pass.
    #[test]
    fn lines_are_the_reference_split_and_blank_runs_cost_one_pass(
        blanks in 0usize..200_000,
        tail in prop::collection::vec(event_line(), 0..4),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut stream = vec![b'\n'; blanks];
        for l in &tail {
            stream.extend_from_slice(l.as_bytes());
            stream.extend_from_slice(b"\r\n\n");
        }
        let reference: Vec<Vec<u8>> = stream
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(<[u8]>::to_vec)
            .collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(stream.len());
        let mut d = LineDecoder::default();
        let (mut from, mut lines) = (0, Vec::new());
        let started = std::time::Instant::now();
        for to in cuts {
            d.push(&stream[from..to]);
            from = to;
            while let Some(line) = d.next_line().unwrap() {
                lines.push(line);
            }
        }
        prop_assert_eq!(lines, reference);
        // 200k blank lines: milliseconds when linear, tens of seconds when quadratic.
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
