use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use rudder_client::clock;
use serde_json::json;

use super::*;
use crate::filters::Plugin;
use crate::queue::*;

fn t0() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

fn at(secs: u64) -> Timestamp {
    clock::add(t0(), Duration::from_secs(secs))
}

fn queue() -> SchedulingQueue {
    SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10))
}

fn prio(name: &str, priority: i64) -> Arc<PodInfo> {
    info(with_spec(pod(name, "", ""), "priority", json!(priority)))
}

fn pop_name(q: &mut SchedulingQueue) -> Option<String> {
    q.pop().map(|p| p.name.to_string())
}

#[test]
fn higher_priority_first_then_first_come() {
    let mut q = queue();
    q.upsert(prio("low-1", 0), true, t0());
    q.upsert(prio("high", 100), true, t0());
    q.upsert(prio("low-2", 0), true, t0());
    q.upsert(prio("low-1", 0), false, t0()); // an update keeps its place
    assert_eq!(pop_name(&mut q).as_deref(), Some("high"));
    assert_eq!(pop_name(&mut q).as_deref(), Some("low-1"));
    assert_eq!(pop_name(&mut q).as_deref(), Some("low-2"));
    assert_eq!(pop_name(&mut q), None);
    assert_eq!(q.counts().in_flight, 3);
}

#[test]
fn unschedulable_pods_wait_for_a_relevant_event_and_their_back_off() {
    let mut q = queue();
    q.upsert(prio("p", 0), true, t0());
    let p = q.pop().unwrap();
    q.unschedulable(&p.uid, Plugin::NodeResourcesFit.bit(), t0());
    assert_eq!(q.counts().unschedulable, 1);
    // an event no rejecting plugin cares about
    assert_eq!(q.move_unschedulable(Plugin::TaintToleration.bit(), at(5)), 0);
    // our own status patch (no spec change) does not wake it either
    q.upsert(p.clone(), false, at(5));
    assert_eq!(q.counts().unschedulable, 1);
    // a relevant event within the 1 s back-off: backing off first
    let soon = clock::add(t0(), Duration::from_millis(500));
    assert_eq!(q.move_unschedulable(Plugin::NodeResourcesFit.bit(), soon), 1);
    assert_eq!(q.counts().backoff, 1);
    assert_eq!(pop_name(&mut q), None);
    assert_eq!(q.next_backoff_due(), Some(at(1)));
    q.flush_backoff(soon);
    assert_eq!(pop_name(&mut q), None);
    q.flush_backoff(at(1));
    assert_eq!(pop_name(&mut q).as_deref(), Some("p"));
}

#[test]
fn a_spec_change_retries_at_once_after_the_back_off() {
    let mut q = queue();
    q.upsert(prio("p", 0), true, t0());
    let p = q.pop().unwrap();
    q.unschedulable(&p.uid, Plugin::NodeAffinity.bit(), t0());
    q.upsert(p, true, at(2));
    assert_eq!(pop_name(&mut q).as_deref(), Some("p"));
}

#[test]
fn binding_failures_back_off_exponentially() {
    let mut q = queue();
    assert_eq!(q.backoff_duration(1), Duration::from_secs(1));
    assert_eq!(q.backoff_duration(3), Duration::from_secs(4));
    assert_eq!(q.backoff_duration(9), Duration::from_secs(10));
    q.upsert(prio("p", 0), true, t0());
    let p = q.pop().unwrap();
    q.retry(&p.uid, t0());
    assert_eq!(q.counts().backoff, 1);
    q.flush_backoff(at(1));
    let p = q.pop().unwrap();
    q.retry(&p.uid, at(1)); // second attempt: 2 s
    q.flush_backoff(at(2));
    assert_eq!(pop_name(&mut q), None);
    q.flush_backoff(at(3));
    assert_eq!(pop_name(&mut q).as_deref(), Some("p"));
}

#[test]
fn long_unschedulable_pods_are_flushed_periodically() {
    let mut q = queue();
    q.upsert(prio("p", 0), true, t0());
    let p = q.pop().unwrap();
    q.unschedulable(&p.uid, Plugin::NodeResourcesFit.bit(), t0());
    assert_eq!(q.flush_unschedulable(at(299), Duration::from_secs(300)), 0);
    assert_eq!(q.flush_unschedulable(at(300), Duration::from_secs(300)), 1);
    assert_eq!(pop_name(&mut q).as_deref(), Some("p"));
}

#[test]
fn gated_pods_wait_for_their_gates_and_deleted_pods_leave() {
    let mut q = queue();
    let gated = info(with_spec(pod("g", "", ""), "schedulingGates", json!([{ "name": "x" }])));
    q.upsert(gated, true, t0());
    assert_eq!(pop_name(&mut q), None);
    assert_eq!(q.counts().gated, 1);
    q.upsert(info(pod("g", "", "")), true, t0());
    q.upsert(info(pod("gone", "", "")), true, t0());
    q.remove("uid-gone");
    assert_eq!(pop_name(&mut q).as_deref(), Some("g"));
    assert_eq!(pop_name(&mut q), None);
}
