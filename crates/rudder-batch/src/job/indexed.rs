//! Indexed completion mode: each pod carries a completion index in `[0, completions)`
//! (annotation and label `batch.kubernetes.io/job-completion-index`), the Job is complete
//! when every index has a succeeded pod, and `status.completedIndexes` lists the succeeded
//! indexes compressed into intervals (`1,3-5`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::pods::{has_tracking_finalizer, phase};

pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The pod's completion index (annotation, else label), if it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    fn from(m: &Option<BTreeMap<String, String>>) -> Option<&str> {
        m.as_ref().and_then(|m| m.get(COMPLETION_INDEX_ANNOTATION)).map(String::as_str)
    }
    let text = from(&pod.metadata.annotations).or_else(|| from(&pod.metadata.labels))?;
    text.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// The index if it is valid for `completions`.
pub fn valid_index(pod: &Pod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|i| *i < completions)
}

/// Parses `status.completedIndexes`, keeping indexes below `completions` (bad parts skipped).
pub fn parse_indexes(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else { continue };
        for i in lo.max(0)..=hi.min(completions - 1) {
            set.insert(i);
        }
    }
    set
}

/// The compressed form: consecutive runs as `a-b`, single indexes as `a`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    parts.join(",")
}

/// Succeeded indexes: those in the status plus those of succeeded pods not yet counted (they
/// still have the tracking finalizer). Returns (previous, all).
pub fn succeeded_indexes(
    completed_indexes: &str,
    completions: i32,
    pods: &[Arc<Pod>],
) -> (BTreeSet<i32>, BTreeSet<i32>) {
    let previous = parse_indexes(completed_indexes, completions);
    let mut all = previous.clone();
    for p in pods {
        if phase(p) == "Succeeded"
            && has_tracking_finalizer(p)
            && let Some(i) = valid_index(p, completions)
        {
            all.insert(i);
        }
    }
    (previous, all)
}

/// The `count` lowest indexes that neither succeeded nor have an active pod.
pub fn first_pending_indexes(
    succeeded: &BTreeSet<i32>,
    active: &[Arc<Pod>],
    count: usize,
    completions: i32,
) -> Vec<i32> {
    let running: BTreeSet<i32> =
        active.iter().filter_map(|p| valid_index(p, completions)).collect();
    (0..completions)
        .filter(|i| !succeeded.contains(i) && !running.contains(i))
        .take(count)
        .collect()
}

/// Active pods that must go whatever the counts: those without a valid index, and all but
/// one pod of an index that has several (the one kept is the one `keep_first` orders first).
pub fn pods_with_bad_or_duplicate_index(
    active: &[Arc<Pod>],
    completions: i32,
    keep_first: impl Fn(&[Arc<Pod>]) -> Vec<Arc<Pod>>,
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut remove = Vec::new();
    let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
    for p in active {
        match valid_index(p, completions) {
            Some(i) => by_index.entry(i).or_default().push(p.clone()),
            None => remove.push(p.clone()),
        }
    }
    let mut left = Vec::new();
    for (_, pods) in by_index {
        let mut ordered = keep_first(&pods);
        if ordered.is_empty() {
            continue;
        }
        left.push(ordered.remove(0));
        remove.extend(ordered);
    }
    (remove, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(index: Option<&str>, phase: &str, finalizer: bool) -> Arc<Pod> {
        let mut p = Pod::default();
        if let Some(i) = index {
            p.metadata.annotations =
                Some(BTreeMap::from([(COMPLETION_INDEX_ANNOTATION.to_owned(), i.to_owned())]));
        }
        if finalizer {
            p.metadata.finalizers = Some(vec![super::super::pods::TRACKING_FINALIZER.into()]);
        }
        p.status = Some(Default::default());
        p.status.as_mut().unwrap().phase = Some(phase.into());
        Arc::new(p)
    }

    #[test]
    fn interval_strings() {
        let set = parse_indexes("0,2-4,7,9-20", 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7, 9]);
        assert_eq!(format_indexes(&set), "0,2-4,7,9");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(parse_indexes("x,1", 3).len(), 1);
    }

    #[test]
    fn pending_and_succeeded_indexes() {
        let pods = vec![
            pod(Some("1"), "Succeeded", true),
            pod(Some("2"), "Running", true),
            pod(Some("3"), "Succeeded", false), // counted already (finalizer removed)
            pod(Some("9"), "Succeeded", true),  // out of range
        ];
        let (prev, all) = succeeded_indexes("0", 5, &pods);
        assert_eq!(prev.iter().copied().collect::<Vec<_>>(), [0]);
        assert_eq!(all.iter().copied().collect::<Vec<_>>(), [0, 1]);
        let active = vec![pods[1].clone()];
        assert_eq!(first_pending_indexes(&all, &active, 5, 5), [3, 4]);
        assert_eq!(first_pending_indexes(&all, &active, 1, 5), [3]);
    }

    #[test]
    fn bad_and_duplicate_indexes_are_removed() {
        let a = pod(Some("0"), "Running", true);
        let b = pod(Some("0"), "Pending", true);
        let c = pod(None, "Running", true);
        let d = pod(Some("1"), "Running", true);
        let (remove, left) = pods_with_bad_or_duplicate_index(
            &[a.clone(), b.clone(), c.clone(), d.clone()],
            2,
            |p| p.to_vec(),
        );
        assert_eq!(remove.len(), 2);
        assert!(Arc::ptr_eq(&remove[0], &c) && Arc::ptr_eq(&remove[1], &b));
        assert_eq!(left.len(), 2);
    }
}
