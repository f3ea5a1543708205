use super::*;
use crate::runtime::watcher::fixtures::*;
use proptest::prelude::*;

fn rv(state: &WatchState) -> Option<&str> {
    match state {
        WatchState::InitListed { resource_version } | WatchState::Watching { resource_version } => {
            Some(resource_version)
        }
        _ => None,
    }
}

type Step = (WatchState, Output<Obj, FakeError>);

fn watching(rv: &str) -> WatchState {
    WatchState::Watching {
        resource_version: rv.into(),
    }
}

fn ev(state: WatchState, e: WatchEvent<Obj>) -> Step {
    step(state, Input::Event(e))
}

// === the state machine, without a network ===

#[test]
fn empty_lists_from_the_first_page() {
    assert_eq!(
        WatchState::Empty.next_io(),
        Io::List {
            continue_token: None
        }
    );
}

#[test]
fn pages_accumulate_until_continue_is_absent() {
    let (s, out) = step::<_, FakeError>(
        WatchState::Empty,
        Input::Page(page(vec![obj("a", "1", 0)], Some("9"), Some("c1"))),
    );
    // Each page is handed out as it lands, not buffered.
    match out {
        Output::Page { items, last } => {
            assert_eq!(names(&items), vec!["a"]);
            assert!(!last);
        }
        other => panic!("expected a page, got {other:?}"),
    }
    assert_eq!(
        s.next_io(),
        Io::List {
            continue_token: Some("c1".into())
        }
    );
    // A short, even empty, page with a continue token is not the end.
    let (s, out) = step::<_, FakeError>(s, Input::Page(page(vec![], Some("9"), Some("c2"))));
    assert!(matches!(out, Output::Page { ref items, last: false } if items.is_empty()));
    let (s, out) = step::<_, FakeError>(
        s,
        Input::Page(page(vec![obj("b", "2", 0)], Some("9"), None)),
    );
    match out {
        Output::Page { items, last } => {
            assert_eq!(names(&items), vec!["b"]);
            assert!(last, "the last page completes the list");
        }
        other => panic!("expected the last page, got {other:?}"),
    }
    assert_eq!(
        s.next_io(),
        Io::OpenWatch {
            resource_version: "9".into()
        }
    );
}

#[test]
fn empty_continue_token_ends_the_list() {
    let (s, out) = step::<_, FakeError>(
        WatchState::Empty,
        Input::Page(page(vec![], Some("3"), Some(""))),
    );
    assert!(matches!(out, Output::Page { ref items, last: true } if items.is_empty()));
    assert_eq!(rv(&s), Some("3"));
}

#[test]
fn expired_continue_token_restarts_the_list_from_scratch() {
    let (s, _) = step::<_, FakeError>(
        WatchState::Empty,
        Input::Page(page(vec![obj("a", "1", 0)], None, Some("c1"))),
    );
    let (s, out) = step::<Obj, _>(
        s,
        Input::ListFailed {
            error: FakeError(410),
            gone: true,
        },
    );
    assert!(
        matches!(out, Output::Failed(ref e @ WatcherError::InitialListFailed { .. }) if e.is_expired())
    );
    assert_eq!(s, WatchState::Empty, "the stale list was not started over");
}

#[test]
fn list_error_retries_the_same_page() {
    let (s, _) = step::<_, FakeError>(
        WatchState::Empty,
        Input::Page(page(vec![obj("a", "1", 0)], None, Some("c1"))),
    );
    let (s, out) = step::<Obj, _>(
        s,
        Input::ListFailed {
            error: FakeError(500),
            gone: false,
        },
    );
    assert!(matches!(
        out,
        Output::Failed(WatcherError::InitialListFailed { expired: false, .. })
    ));
    assert_eq!(
        s.next_io(),
        Io::List {
            continue_token: Some("c1".into())
        }
    );
}

#[test]
fn list_without_resource_version_fails_and_relists() {
    let (s, out) = step::<_, FakeError>(
        WatchState::Empty,
        Input::Page(page(vec![obj("a", "1", 0)], None, None)),
    );
    assert!(matches!(
        out,
        Output::Failed(WatcherError::ListWithoutResourceVersion)
    ));
    assert_eq!(s, WatchState::Empty);
}

#[test]
fn watch_opens_at_the_list_version() {
    let s = WatchState::InitListed {
        resource_version: "7".into(),
    };
    let (s, out) = step::<Obj, FakeError>(s, Input::WatchOpened);
    assert!(matches!(out, Output::Nothing));
    assert_eq!(s, watching("7"));
    assert_eq!(s.next_io(), Io::NextEvent);
}

#[test]
fn watch_start_410_relists_and_other_errors_retry_the_watch() {
    let listed = || WatchState::InitListed {
        resource_version: "7".into(),
    };
    let (s, out) = step::<Obj, _>(
        listed(),
        Input::WatchOpenFailed {
            error: FakeError(410),
            gone: true,
        },
    );
    assert_eq!(s, WatchState::Empty);
    assert!(
        matches!(out, Output::Failed(ref e @ WatcherError::WatchStartFailed { .. }) if e.is_expired())
    );
    let (s, out) = step::<Obj, _>(
        listed(),
        Input::WatchOpenFailed {
            error: FakeError(500),
            gone: false,
        },
    );
    assert_eq!(s, listed());
    assert!(matches!(out, Output::Failed(ref e) if !e.is_expired()));
}

#[test]
fn events_advance_the_version_and_are_emitted() {
    let (s, out) = ev(watching("1"), WatchEvent::Added(obj("a", "2", 0)));
    assert_eq!(rv(&s), Some("2"));
    assert!(matches!(out, Output::Emit(Event::Applied(ref o)) if o.v == 0));
    let (s, out) = ev(s, WatchEvent::Modified(obj("a", "3", 1)));
    assert_eq!(rv(&s), Some("3"));
    assert!(matches!(out, Output::Emit(Event::Applied(ref o)) if o.v == 1));
    let (s, out) = ev(s, WatchEvent::Deleted(obj("a", "4", 1)));
    assert_eq!(s, watching("4"));
    assert!(matches!(out, Output::Emit(Event::Deleted(_))));
}

#[test]
fn event_without_version_keeps_the_last_one() {
    let mut o = obj("a", "x", 0);
    o.metadata.resource_version = None;
    let (s, _) = ev(watching("5"), WatchEvent::Added(o.clone()));
    assert_eq!(s, watching("5"));
    // Empty would mean "from now" to the server: events would be skipped.
    o.metadata.resource_version = Some(String::new());
    let (s, _) = ev(s, WatchEvent::Modified(o));
    assert_eq!(s, watching("5"));
    let (s, _) = ev(
        s,
        WatchEvent::Bookmark {
            resource_version: String::new(),
        },
    );
    assert_eq!(s, watching("5"));
}

#[test]
fn event_keys_name_every_object() {
    let e: Event<Obj> = Event::Restarted(vec![
        ObjectKey::namespaced("ns", "a"),
        ObjectKey::namespaced("ns", "b"),
    ]);
    let keys: Vec<_> = e.keys().iter().map(|k| k.to_string()).collect();
    assert_eq!(keys, vec!["ns/a", "ns/b"]);
    let e = Event::Deleted(obj("c", "2", 0));
    assert_eq!(e.keys().len(), 1);
    let mut nameless = obj("x", "1", 0);
    nameless.metadata.name = None;
    assert!(Event::Applied(nameless).keys().is_empty());
}

#[test]
fn bookmark_advances_the_version_and_emits_nothing() {
    let (s, out) = ev(
        watching("1"),
        WatchEvent::Bookmark {
            resource_version: "99".into(),
        },
    );
    assert_eq!(s, watching("99"));
    assert!(matches!(out, Output::Nothing));
}

#[test]
fn clean_end_rewatches_from_the_last_version() {
    let ended = Input::StreamEnded {
        lasted: Duration::from_secs(290),
        events: 0,
    };
    let (s, out) = step::<Obj, FakeError>(watching("42"), ended);
    assert!(matches!(out, Output::Nothing));
    assert_eq!(
        s.next_io(),
        Io::OpenWatch {
            resource_version: "42".into()
        }
    );
}

#[test]
fn very_short_empty_watch_is_a_failure() {
    let ended = Input::StreamEnded {
        lasted: Duration::from_millis(20),
        events: 0,
    };
    let (s, out) = step::<Obj, FakeError>(watching("42"), ended);
    assert_eq!(
        s,
        WatchState::InitListed {
            resource_version: "42".into()
        }
    );
    assert!(matches!(
        out,
        Output::Failed(WatcherError::WatchTooShort { .. })
    ));
    // A short watch that did deliver something is fine.
    let ended = Input::StreamEnded {
        lasted: Duration::from_millis(20),
        events: 1,
    };
    let (_, out) = step::<Obj, FakeError>(watching("42"), ended);
    assert!(matches!(out, Output::Nothing));
}

#[test]
fn gone_error_event_relists() {
    for st in [
        status(410, "Expired"),
        status(410, "Gone"),
        status(0, "Expired"),
        status(410, ""),
    ] {
        let (s, out) = ev(watching("1"), WatchEvent::Error(st.clone()));
        assert_eq!(s, WatchState::Empty, "{st:?} did not relist");
        assert!(
            matches!(out, Output::Failed(ref e @ WatcherError::WatchErrorEvent { .. }) if e.is_expired())
        );
    }
}

#[test]
fn other_error_event_rewatches_from_the_last_version() {
    let (s, out) = ev(
        watching("8"),
        WatchEvent::Error(status(500, "InternalError")),
    );
    assert_eq!(
        s,
        WatchState::InitListed {
            resource_version: "8".into()
        }
    );
    match out {
        Output::Failed(e) => {
            assert!(!e.is_expired());
            let msg = e.to_string();
            assert!(
                msg.contains("500") && msg.contains("InternalError"),
                "{msg}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn stream_failure_410_relists_and_others_rewatch() {
    let (s, _) = step::<Obj, _>(
        watching("3"),
        Input::StreamFailed {
            error: FakeError(410),
            gone: true,
        },
    );
    assert_eq!(s, WatchState::Empty);
    let (s, out) = step::<Obj, _>(
        watching("3"),
        Input::StreamFailed {
            error: FakeError(502),
            gone: false,
        },
    );
    assert_eq!(
        s,
        WatchState::InitListed {
            resource_version: "3".into()
        }
    );
    assert!(matches!(
        out,
        Output::Failed(WatcherError::WatchFailed { expired: false, .. })
    ));
}

#[test]
fn idle_stream_rewatches_with_a_failure() {
    let (s, out) = step::<Obj, FakeError>(
        watching("3"),
        Input::StreamIdle {
            after: Duration::from_secs(320),
        },
    );
    assert_eq!(
        s,
        WatchState::InitListed {
            resource_version: "3".into()
        }
    );
    assert!(matches!(
        out,
        Output::Failed(WatcherError::WatchIdle { .. })
    ));
}

#[test]
fn mismatched_input_changes_nothing() {
    let (s, out) = step::<Obj, FakeError>(WatchState::Empty, Input::WatchOpened);
    assert_eq!(s, WatchState::Empty);
    assert!(matches!(out, Output::Nothing));
}

// === properties of the machine over random answers ===

fn arb_rv() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        (1u32..50).prop_map(|n| Some(n.to_string())),
    ]
}

fn arb_obj() -> impl Strategy<Value = Obj> {
    (0u8..4, arb_rv()).prop_map(|(n, rv)| {
        let mut o = obj(&format!("o{n}"), "", 0);
        o.metadata.resource_version = rv;
        o
    })
}

fn arb_input() -> impl Strategy<Value = Input<Obj, FakeError>> {
    let gone = any::<bool>();
    prop_oneof![
        (
            proptest::collection::vec(arb_obj(), 0..3),
            arb_rv(),
            prop_oneof![
                Just(None),
                Just(Some("c".to_string())),
                Just(Some(String::new()))
            ]
        )
            .prop_map(|(items, rv, cont)| Input::Page(page(
                items,
                rv.as_deref(),
                cont.as_deref()
            ))),
        gone.prop_map(|gone| Input::ListFailed {
            error: FakeError(if gone { 410 } else { 500 }),
            gone
        }),
        Just(()).prop_map(|_| Input::WatchOpened),
        gone.prop_map(|gone| Input::WatchOpenFailed {
            error: FakeError(if gone { 410 } else { 500 }),
            gone
        }),
        arb_obj().prop_map(|o| Input::Event(WatchEvent::Added(o))),
        arb_obj().prop_map(|o| Input::Event(WatchEvent::Deleted(o))),
        arb_rv().prop_map(|rv| Input::Event(WatchEvent::Bookmark {
            resource_version: rv.unwrap_or_default()
        })),
        (prop_oneof![Just(410u16), Just(500u16)]).prop_map(|c| Input::Event(WatchEvent::Error(
            status(c, if c == 410 { "Expired" } else { "InternalError" })
        ))),
        (0u64..3000, 0u64..3).prop_map(|(ms, events)| Input::StreamEnded {
            lasted: Duration::from_millis(ms),
            events
        }),
        gone.prop_map(|gone| Input::StreamFailed {
            error: FakeError(if gone { 410 } else { 500 }),
            gone
        }),
        Just(()).prop_map(|_| Input::StreamIdle {
            after: Duration::from_secs(320)
        }),
    ]
}

fn is_gone_input(input: &Input<Obj, FakeError>) -> bool {
    match input {
        Input::ListFailed { gone, .. }
        | Input::WatchOpenFailed { gone, .. }
        | Input::StreamFailed { gone, .. } => *gone,
        Input::Event(WatchEvent::Error(st)) => is_gone_status(st),
        _ => false,
    }
}

proptest! {
    #[test]
    fn machine_invariants_hold_for_any_answers(inputs in proptest::collection::vec(arb_input(), 1..60)) {
        let mut state = WatchState::Empty;
        let mut listed_once = false;
        for input in inputs {
            let was_watching = matches!(state, WatchState::Watching { .. });
            let was_listing = matches!(state, WatchState::Empty | WatchState::InitPage { .. });
            let gone = is_gone_input(&input);
            let fits = matches!(
                (&state, &input),
                (WatchState::Empty | WatchState::InitPage { .. }, Input::Page(_) | Input::ListFailed { .. })
                    | (WatchState::InitListed { .. }, Input::WatchOpened | Input::WatchOpenFailed { .. })
                    | (
                        WatchState::Watching { .. },
                        Input::Event(_) | Input::StreamEnded { .. } | Input::StreamFailed { .. } | Input::StreamIdle { .. }
                    )
            );
            let (next, out) = step(state, input);
            // Where a watch would start is never empty ("from now" skips events).
            if let Some(v) = rv(&next) {
                prop_assert!(!v.is_empty(), "empty resourceVersion in {next:?}");
            }
            match &out {
                Output::Page { last, .. } => {
                    prop_assert!(was_listing);
                    if *last {
                        let listed = matches!(next, WatchState::InitListed { .. });
                        prop_assert!(listed, "a complete list without a version to watch from");
                        listed_once = true;
                    }
                }
                Output::Emit(_) => {
                    // Object events come only from a watch, hence after a full list.
                    prop_assert!(was_watching && listed_once);
                }
                _ => {}
            }
            // A 410 anywhere means starting over with a list.
            if gone && fits {
                prop_assert_eq!(&next, &WatchState::Empty);
            }
            state = next;
        }
    }
}
