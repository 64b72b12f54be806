//! The journal against a model: random sequences of the state changes the daemon makes (events
//! recorded, camera items ingested, invocations claimed, finished and recovered after a crash,
//! raw items settled, outbox rows queued, done and dropped), each checked against a plain
//! in-memory model after every step. Seeds are fixed: a failure names its seed and step.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::config::{FullPolicy, JournalSync};

#[derive(Debug, Clone, PartialEq)]
struct Inv {
    service: String,
    event: i64,
    state: State,
    attempts: u32,
}

#[derive(Debug, Default)]
struct Model {
    invocations: BTreeMap<InvocationId, Inv>,
    events: BTreeSet<(String, String)>,
    raw_seen: BTreeSet<(String, String)>,
    /// event id -> processed?
    raw: BTreeMap<i64, bool>,
    /// key -> (row id, state, checksum)
    outbox: BTreeMap<String, (i64, String, String)>,
}

impl Model {
    /// The invocations an event made: one queued per service, in order.
    fn queued(&mut self, event: i64, ids: &[InvocationId], services: &[String]) {
        assert_eq!(ids.len(), services.len(), "one invocation per routed service");
        for (id, s) in ids.iter().zip(services) {
            let inv = Inv {
                service: s.clone(),
                event,
                state: State::Queued,
                attempts: 0,
            };
            self.invocations.insert(*id, inv);
        }
    }
}

const SERVICES: [&str; 2] = ["a", "b"];

fn pick<T: Clone>(rng: &mut StdRng, v: &[T]) -> Option<T> {
    (!v.is_empty()).then(|| v[rng.gen_range(0..v.len())].clone())
}

fn services(rng: &mut StdRng) -> Vec<String> {
    SERVICES
        .iter()
        .filter(|_| rng.gen_bool(0.6))
        .map(|s| s.to_string())
        .collect()
}

fn step(j: &Journal, m: &mut Model, rng: &mut StdRng) -> String {
    match rng.gen_range(0..9) {
        0 => {
            let (key, etag) = (
                format!("b/in/{}", rng.gen_range(0..6)),
                format!("e{}", rng.gen_range(0..2)),
            );
            let svcs = services(rng);
            let names: Vec<&str> = svcs.iter().map(String::as_str).collect();
            let ev = NewEvent {
                provider: "minio.default".into(),
                key: key.clone(),
                etag: etag.clone(),
                size: 1,
                event_time: String::new(),
                source: "put".into(),
                job_id: None,
                parent: None,
            };
            let got = j.record_event(&ev, &names).expect("record");
            if !m.events.insert((key.clone(), etag.clone())) {
                assert_eq!(got, None, "a second delivery of {key}@{etag} makes nothing");
            } else {
                let (event, ids) = got.expect("a new event");
                m.queued(event, &ids, &svcs);
            }
            format!("record {key}@{etag} for {svcs:?}")
        }
        1 => {
            let (camera, content) = (
                format!("cam{}", rng.gen_range(0..2)),
                format!("c{}", rng.gen_range(0..5)),
            );
            let svcs = services(rng);
            let key = format!("cameras/incoming/{camera}/{content}-{}.jpg", rng.gen::<u32>());
            let item = Spooled {
                source: "mqtt".into(),
                camera: camera.clone(),
                topic: "t".into(),
                key: key.clone(),
                path: format!("/x/{key}"),
                size: 1,
                checksum: content.clone(),
            };
            let got = j
                .ingest_batch(&[item], "now", std::slice::from_ref(&svcs))
                .expect("ingest");
            if !m.raw_seen.insert((camera.clone(), content.clone())) {
                assert_eq!(
                    got,
                    vec![None],
                    "the same content from {camera} again is a duplicate"
                );
            } else {
                let ids = got[0].clone().expect("new");
                let event: i64 = j
                    .conn()
                    .query_row("SELECT event_id FROM ingest WHERE key = ?1", [&key], |r| r.get(0))
                    .expect("event");
                m.raw.insert(event, false);
                m.events.insert((key.clone(), content.clone()));
                m.queued(event, &ids, &svcs);
            }
            format!("ingest {camera}/{content} for {svcs:?}")
        }
        2 | 3 => {
            let svc = pick(rng, &SERVICES).expect("service");
            let limit = rng.gen_range(0..4);
            let got: Vec<InvocationId> = j.claim(svc, limit).expect("claim").iter().map(|i| i.id).collect();
            let want: Vec<InvocationId> = m
                .invocations
                .iter()
                .filter(|(_, i)| i.service == svc && i.state == State::Queued)
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
            assert_eq!(got, want, "claim {svc} {limit}: the oldest queued, in order");
            for id in &want {
                let i = m.invocations.get_mut(id).expect("known");
                i.state = State::Running;
                i.attempts += 1;
            }
            format!("claim {svc} {limit} -> {got:?}")
        }
        4 | 5 => {
            let running: Vec<InvocationId> = m
                .invocations
                .iter()
                .filter(|(_, i)| i.state == State::Running)
                .map(|(id, _)| *id)
                .collect();
            let Some(id) = pick(rng, &running) else {
                return "finish: none running".into();
            };
            let state = pick(
                rng,
                &[State::Succeeded, State::Succeeded, State::Failed, State::TimedOut],
            )
            .expect("state");
            j.finish(id, &Outcome::test(state)).expect("finish");
            m.invocations.get_mut(&id).expect("known").state = state;
            format!("finish {id} {}", state.as_str())
        }
        6 => {
            let (requeued, failed) = j.recover(3).expect("recover");
            let (mut rq, mut fl) = (0, 0);
            for i in m.invocations.values_mut().filter(|i| i.state == State::Running) {
                if i.attempts >= 3 {
                    i.state = State::Failed;
                    fl += 1;
                } else {
                    i.state = State::Queued;
                    rq += 1;
                }
            }
            assert_eq!((requeued, failed), (rq, fl), "recover");
            format!("recover -> {rq} requeued, {fl} failed")
        }
        7 => {
            let events: Vec<i64> = m.raw.keys().copied().collect();
            let Some(event) = pick(rng, &events) else {
                return "settle: no raw item".into();
            };
            let got = j.ingest_settle(event).expect("settle").is_some();
            let all_ok = m
                .invocations
                .values()
                .filter(|i| i.event == event)
                .all(|i| i.state == State::Succeeded);
            let processed = m.raw.get_mut(&event).expect("known");
            let want = all_ok && !*processed;
            assert_eq!(got, want, "settle event {event}");
            *processed |= want;
            format!("settle {event} -> {got}")
        }
        _ => {
            let key = format!("up/{}/{}", rng.gen_range(0..2), rng.gen_range(0..3));
            match rng.gen_range(0..3) {
                0 => {
                    let sum = format!("s{}", rng.gen_range(0..3));
                    let item = OutboxItem {
                        provider: "s3.x".into(),
                        key: key.clone(),
                        local_path: format!("/o/{key}/{sum}"),
                        size: 1,
                        checksum: sum.clone(),
                        md5: String::new(),
                        priority: 0,
                        invocation: None,
                    };
                    let got = j
                        .outbox_enqueue(&item, 1 << 30, FullPolicy::DropOldest)
                        .expect("enqueue");
                    match (m.outbox.get(&key), got) {
                        (Some((_, st, s)), Enqueued::AlreadyDone) => assert!(st == "done" && *s == sum),
                        (prev, Enqueued::Queued { id, .. }) => {
                            assert!(
                                prev.is_none_or(|(old, st, s)| *old == id && !(st == "done" && *s == sum))
                            );
                            m.outbox.insert(key.clone(), (id, "pending".into(), sum.clone()));
                        }
                        (prev, other) => panic!("enqueue {key} over {prev:?}: {other:?}"),
                    }
                    format!("enqueue {key} {sum}")
                }
                n => {
                    let pending: Vec<(String, i64)> = m
                        .outbox
                        .iter()
                        .filter(|(_, r)| r.1 == "pending")
                        .map(|(k, r)| (k.clone(), r.0))
                        .collect();
                    let Some((key, id)) = pick(rng, &pending) else {
                        return "outbox: none pending".into();
                    };
                    let state = if n == 1 { "done" } else { "dropped" };
                    if n == 1 {
                        j.outbox_done(id).expect("done");
                    } else {
                        j.outbox_drop(id, "dropped", "test", "outbox_dropped_test")
                            .expect("drop");
                    }
                    m.outbox.get_mut(&key).expect("known").1 = state.into();
                    format!("outbox {state} {key}")
                }
            }
        }
    }
}

fn check(j: &Journal, m: &Model, what: &str) {
    let rows = j.invocations(None, 1 << 20).expect("list");
    let got: BTreeMap<InvocationId, (String, State, u32)> = rows
        .iter()
        .map(|i| (i.id, (i.service.clone(), i.state, i.attempts)))
        .collect();
    let want: BTreeMap<InvocationId, (String, State, u32)> = m
        .invocations
        .iter()
        .map(|(id, i)| (*id, (i.service.clone(), i.state, i.attempts)))
        .collect();
    assert_eq!(got, want, "invocations after {what}");
    let queued: BTreeSet<String> = m
        .invocations
        .values()
        .filter(|i| i.state == State::Queued)
        .map(|i| i.service.clone())
        .collect();
    assert_eq!(
        j.queued_services()
            .expect("q")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        queued,
        "queued services after {what}"
    );
    let outbox: BTreeMap<String, String> = j
        .outbox_list(None, 1 << 20)
        .expect("outbox")
        .into_iter()
        .map(|r| (r.key, r.state))
        .collect();
    let want: BTreeMap<String, String> = m.outbox.iter().map(|(k, r)| (k.clone(), r.1.clone())).collect();
    assert_eq!(outbox, want, "outbox after {what}");
    let processed: BTreeSet<String> = j
        .rows("SELECT event_id FROM ingest WHERE state = 'processed'", [], |r| {
            r.get::<_, i64>(0)
        })
        .expect("processed")
        .into_iter()
        .map(|e| e.to_string())
        .collect();
    let want: BTreeSet<String> = m
        .raw
        .iter()
        .filter(|(_, p)| **p)
        .map(|(e, _)| e.to_string())
        .collect();
    assert_eq!(processed, want, "processed raw items after {what}");
}

#[test]
fn random_sequences_of_state_changes_agree_with_the_model() {
    for seed in 0..24u64 {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        let mut m = Model::default();
        let mut rng = StdRng::seed_from_u64(seed);
        for n in 0..250 {
            let what = step(&j, &mut m, &mut rng);
            check(&j, &m, &format!("seed {seed} step {n}: {what}"));
        }
    }
}

#[test]
fn a_reopened_journal_holds_the_same_state_as_the_model() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("j.sqlite");
    let mut m = Model::default();
    let mut rng = StdRng::seed_from_u64(99);
    {
        let j = Journal::open(&path, JournalSync::Full).expect("open");
        for _ in 0..300 {
            step(&j, &mut m, &mut rng);
        }
    }
    // As after a crash: nothing kept in memory, everything from the file.
    let j = Journal::open(&path, JournalSync::Full).expect("reopen");
    check(&j, &m, "reopen");
}
