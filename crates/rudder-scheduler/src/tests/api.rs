use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::api::*;

fn now() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

#[test]
fn the_unschedulable_condition_is_written_only_when_it_changes() {
    let fresh = to_pod(pod("p", "1", ""));
    let patch =
        unschedulable_patch(&fresh, REASON_UNSCHEDULABLE, "0/1 nodes", &NominatedNode::Keep, now())
            .expect("a new condition");
    assert_eq!(
        patch,
        json!({ "status": {
            "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                             "message": "0/1 nodes", "lastProbeTime": null,
                             "lastTransitionTime": "2025-01-01T00:00:00Z" }],
            "nominatedNodeName": null } })
    );
    let mut reported = pod("p", "1", "");
    reported["status"] = patch["status"].clone();
    let reported = to_pod(reported);
    let later: Timestamp = "2025-01-01T00:05:00Z".parse().unwrap();
    assert_eq!(
        unschedulable_patch(
            &reported,
            REASON_UNSCHEDULABLE,
            "0/1 nodes",
            &NominatedNode::Keep,
            later
        ),
        None
    );
    // a new message keeps the transition time; a nomination is a change too
    let changed = unschedulable_patch(
        &reported,
        REASON_UNSCHEDULABLE,
        "0/2 nodes",
        &NominatedNode::Keep,
        later,
    )
    .unwrap();
    assert_eq!(changed["status"]["conditions"][0]["lastTransitionTime"], "2025-01-01T00:00:00Z");
    let nominated = unschedulable_patch(
        &reported,
        REASON_UNSCHEDULABLE,
        "0/1 nodes",
        &NominatedNode::Set("n1".into()),
        later,
    )
    .unwrap();
    assert_eq!(nominated["status"]["nominatedNodeName"], "n1");
}

#[test]
fn long_messages_are_cut_like_upstream() {
    assert_eq!(truncate_message("short".into()), "short");
    let long = "x".repeat(2000);
    let cut = truncate_message(long);
    assert_eq!(cut.len(), 1024);
    assert!(cut.ends_with(" ..."));
}
