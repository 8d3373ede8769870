//! The thin loop around the pure algorithm: one task owns the snapshot and the queue, applies
//! watch events between cycles, schedules one pod at a time, and hands bindings, status
//! patches, events and victim deletions to background tasks whose results come back as
//! events.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::jiff::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rudder_client::{Context, EventType, Recorder, clock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::algorithm::{self, AlgorithmConfig, CycleCursor, CycleState, Nominated, ScheduleError};
use crate::api::{self, NominatedNode};
use crate::config::SchedulerConfig;
use crate::events::{
    ALL_PLUGINS, DRAIN_BATCH, Input, POD_ADDED_PLUGINS, POD_GONE_PLUGINS, assigned_node,
    facts_plugins, finished, spec_changed, uid_of,
};
use crate::filters::Plugin;
use crate::pod_info::{PodInfo, PriorityClasses};
use crate::preemption::{self, PostFilter};
use crate::queue::{PodState, SchedulingQueue};
use crate::snapshot::{NodeChange, Snapshot};
use crate::volumes::VolumeListers;
use crate::{SchedulerHandle, Stats};

pub(crate) struct Loop {
    ctx: Context,
    config: SchedulerConfig,
    alg: AlgorithmConfig,
    snap: Snapshot,
    queue: SchedulingQueue,
    nominated: Nominated,
    classes: PriorityClasses,
    cursor: CycleCursor,
    rng: StdRng,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    recorder: Recorder,
    binds_in_flight: usize,
    next_unschedulable_flush: Timestamp,
    stats: Arc<Stats>,
}

impl Loop {
    pub(crate) fn new(
        ctx: Context,
        config: SchedulerConfig,
        tx: mpsc::UnboundedSender<Input>,
        rx: mpsc::UnboundedReceiver<Input>,
        stats: Arc<Stats>,
    ) -> Loop {
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let now = ctx.clock.now();
        Loop {
            recorder: ctx.recorder(&config.scheduler_name),
            alg: config.algorithm(),
            queue: SchedulingQueue::new(config.pod_initial_backoff, config.pod_max_backoff),
            next_unschedulable_flush: clock::add(now, config.unschedulable_flush_period),
            config,
            ctx,
            snap: Snapshot::new(),
            nominated: Nominated::default(),
            classes: PriorityClasses::default(),
            cursor: CycleCursor::default(),
            rng,
            tx,
            rx,
            binds_in_flight: 0,
            stats,
        }
    }

    /// Waits for the caches, then schedules until `cancel`.
    pub(crate) async fn run(mut self, handle: &SchedulerHandle, cancel: CancellationToken) {
        let informers = &self.ctx.informers;
        let synced = async {
            informers.get::<Node>().wait_synced().await;
            informers.get::<Pod>().wait_synced().await;
            informers.get::<PriorityClass>().wait_synced().await;
            informers.get::<Namespace>().wait_synced().await;
            VolumeListers::new(informers).wait_synced().await;
        };
        tokio::select! {
            _ = synced => {}
            _ = cancel.cancelled() => return,
        }
        self.snap.volumes = Some(VolumeListers::new(informers));
        // Priorities and namespace labels first, so the pods queued with the first drain
        // see them.
        for pc in informers.get::<PriorityClass>().list() {
            self.classes.upsert(&pc);
        }
        for ns in informers.get::<Namespace>().list() {
            self.namespace(&ns);
        }
        while let Ok(input) = self.rx.try_recv() {
            self.handle(input);
        }
        handle.mark_synced();
        tracing::info!(
            scheduler = %self.config.scheduler_name,
            nodes = self.snap.num_nodes(),
            pods = self.snap.num_pods(),
            queued = self.queue.len(),
            "scheduler caches synced"
        );
        loop {
            let mut drained = 0;
            while drained < DRAIN_BATCH
                && let Ok(input) = self.rx.try_recv()
            {
                self.handle(input);
                drained += 1;
            }
            let now = self.ctx.clock.now();
            self.queue.flush_backoff(now);
            if now >= self.next_unschedulable_flush {
                self.queue
                    .flush_unschedulable(now, self.config.pod_max_in_unschedulable_pods_duration);
                self.next_unschedulable_flush =
                    clock::add(now, self.config.unschedulable_flush_period);
            }
            self.stats.queued.store(self.queue.len() as u64, Ordering::Relaxed);
            if self.binds_in_flight < self.config.parallel_binds.max(1) && self.schedule_next() {
                tokio::task::yield_now().await;
                continue;
            }
            let mut wait = clock::elapsed(now, self.next_unschedulable_flush);
            if let Some(due) = self.queue.next_backoff_due() {
                wait = wait.min(clock::elapsed(now, due));
            }
            let wait = wait.clamp(Duration::from_millis(1), Duration::from_secs(1));
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                input = self.rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.ctx.clock.now();
        match input {
            Input::Node(node) => match self.snap.upsert_node(&node) {
                NodeChange::Added => {
                    self.queue.move_unschedulable(ALL_PLUGINS, now);
                }
                NodeChange::Changed(old, new) => {
                    let bits = facts_plugins(&old, &new);
                    if bits != 0 {
                        self.queue.move_unschedulable(bits, now);
                    }
                }
                NodeChange::Unchanged => {}
            },
            Input::NodeDeleted(node) => {
                self.snap.remove_node(node.metadata.name.as_deref().unwrap_or(""));
                self.queue.move_unschedulable(Plugin::PodTopologySpread.bit(), now);
            }
            Input::Pod { old, new } => self.pod(old.as_deref(), new, now),
            Input::PodDeleted(pod) => {
                let uid = uid_of(&pod);
                self.queue.remove(&uid);
                self.nominated.remove(&uid);
                if self.snap.remove_pod(&uid).is_some() {
                    self.queue.move_unschedulable(POD_GONE_PLUGINS, now);
                }
            }
            Input::PriorityClass(pc) => self.classes.upsert(&pc),
            Input::PriorityClassDeleted(pc) => self.classes.remove(&pc),
            Input::Namespace(ns) => {
                if self.namespace(&ns) {
                    self.queue.move_unschedulable(Plugin::InterPodAffinity.bit(), now);
                }
            }
            Input::NamespaceDeleted(ns) => {
                self.snap.namespaces.labels.remove(ns.metadata.name.as_deref().unwrap_or(""));
            }
            Input::Bound { pod, node, result } => self.bound(pod, node, result, now),
            Input::Volumes => {
                self.queue.move_unschedulable(Plugin::VolumeBinding.bit(), now);
            }
        }
    }

    /// Records a namespace's labels; true when they changed.
    fn namespace(&mut self, ns: &Namespace) -> bool {
        let name = ns.metadata.name.clone().unwrap_or_default();
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        let old = self.snap.namespaces.labels.insert(name, labels.clone());
        old.is_some_and(|o| o != labels)
    }

    fn pod(&mut self, old: Option<&Pod>, new: Arc<Pod>, now: Timestamp) {
        let uid = uid_of(&new);
        if let Some(node) = assigned_node(&new).map(str::to_owned) {
            self.queue.remove(&uid);
            self.nominated.remove(&uid);
            if finished(&new) {
                if self.snap.remove_pod(&uid).is_some() {
                    self.queue.move_unschedulable(POD_GONE_PLUGINS, now);
                }
                return;
            }
            let info = Arc::new(PodInfo::new(new, &self.classes));
            let bits = match self.snap.pod(&uid) {
                Some(e) if !e.assumed && *e.node == *node => {
                    let mut bits = 0;
                    if e.info.labels() != info.labels() {
                        bits |= POD_ADDED_PLUGINS;
                    }
                    if e.info.requests != info.requests {
                        bits |= Plugin::NodeResourcesFit.bit();
                    }
                    bits
                }
                _ => POD_ADDED_PLUGINS,
            };
            self.snap.add_bound_pod(info, &node);
            if bits != 0 {
                self.queue.move_unschedulable(bits, now);
            }
            return;
        }
        let responsible = new
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler")
            == self.config.scheduler_name;
        if !responsible || finished(&new) || new.metadata.deletion_timestamp.is_some() {
            self.queue.remove(&uid);
            self.nominated.remove(&uid);
            return;
        }
        let changed = old.is_none_or(|o| spec_changed(o, &new));
        let nominated_in_status = new
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty());
        let info = Arc::new(PodInfo::new(new, &self.classes));
        if let Some(node) = nominated_in_status
            && self.nominated.node_of(&uid).is_none_or(|n| **n != *node)
        {
            self.nominated.add(info.clone(), &node);
        }
        self.queue.upsert(info.clone(), changed, now);
        if self.queue.get(&uid).is_some_and(|p| p.state == PodState::Gated) {
            api::patch_unschedulable(
                &self.ctx,
                &self.config,
                &info,
                api::REASON_SCHEDULING_GATED,
                api::MSG_SCHEDULING_GATED.to_owned(),
                NominatedNode::Keep,
            );
        }
    }

    /// One scheduling cycle; false when no pod was waiting.
    fn schedule_next(&mut self) -> bool {
        let Some(info) = self.queue.pop() else { return false };
        self.snap.prepare();
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        let nominated_node = self.nominated.node_of(&info.uid).cloned();
        let span = tracing::debug_span!("schedule", pod = %info.key());
        let _enter = span.enter();
        let result = algorithm::schedule_pod(
            &self.snap,
            &info,
            nominated_node.as_deref(),
            &self.nominated,
            &self.alg,
            &mut self.cursor,
            &mut self.rng,
        );
        match result {
            Ok(s) => {
                tracing::debug!(node = %s.node, evaluated = s.evaluated, feasible = s.feasible, "scheduled");
                self.assume_and_bind(info, s.node);
            }
            Err(ScheduleError::NoNodes) => {
                let msg = "no nodes available to schedule pods".to_owned();
                self.unschedulable(&info, msg, 0, NominatedNode::Clear);
            }
            Err(ScheduleError::Unschedulable(diagnosis)) => {
                let plugins = diagnosis.plugins();
                let post = if self.config.preemption {
                    self.post_filter(&info, &diagnosis, nominated_node.as_deref())
                } else {
                    Err(String::new())
                };
                match post {
                    Ok(candidate) => {
                        let msg = diagnosis.message(None);
                        self.preempt(&info, candidate);
                        let node = self.nominated.node_of(&info.uid).map(|n| n.to_string());
                        let nominate = node.map(NominatedNode::Set).unwrap_or(NominatedNode::Keep);
                        self.unschedulable(&info, msg, plugins, nominate);
                    }
                    Err(post) => {
                        let post = (!post.is_empty()).then(|| format!("preemption: {post}"));
                        let msg = diagnosis.message(post.as_deref());
                        self.nominated.remove(&info.uid);
                        self.unschedulable(&info, msg, plugins, NominatedNode::Clear);
                    }
                }
            }
        }
        true
    }

    fn post_filter(
        &mut self,
        info: &PodInfo,
        diagnosis: &algorithm::Diagnosis,
        nominated_node: Option<&str>,
    ) -> Result<preemption::Candidate, String> {
        preemption::eligibility(info, &self.snap, nominated_node)?;
        let state = CycleState::new(info, &self.snap);
        match preemption::preempt(&state, &self.snap, diagnosis, &self.nominated, &mut self.rng) {
            PostFilter::Preempt(c) => Ok(c),
            PostFilter::Failed(msg) => Err(msg),
        }
    }

    fn preempt(&mut self, info: &Arc<PodInfo>, candidate: preemption::Candidate) {
        self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            pod = %info.key(),
            node = %candidate.node,
            victims = candidate.victims.len(),
            "preempting lower-priority pods"
        );
        // Lower-priority pods nominated to the node lose the nomination.
        let displaced: Vec<Arc<PodInfo>> = self
            .nominated
            .on_node(&candidate.node)
            .iter()
            .filter(|p| p.priority < info.priority && p.uid != info.uid)
            .cloned()
            .collect();
        for p in displaced {
            self.nominated.remove(&p.uid);
            api::patch_nominated(&self.ctx, &self.config, &p, NominatedNode::Clear);
        }
        self.nominated.add(info.clone(), &candidate.node);
        for victim in candidate.victims {
            api::delete_victim(
                &self.ctx,
                &self.config,
                &self.recorder,
                victim,
                info,
                &candidate.node,
            );
        }
    }

    fn unschedulable(
        &mut self,
        info: &Arc<PodInfo>,
        msg: String,
        plugins: u16,
        nominate: NominatedNode,
    ) {
        tracing::debug!(message = %msg, "unschedulable");
        self.stats.unschedulable.fetch_add(1, Ordering::Relaxed);
        self.queue.unschedulable(&info.uid, plugins, self.ctx.clock.now());
        let msg = api::truncate_message(msg);
        self.recorder.event(&*info.pod, EventType::Warning, "FailedScheduling", msg.clone());
        api::patch_unschedulable(
            &self.ctx,
            &self.config,
            info,
            api::REASON_UNSCHEDULABLE,
            msg,
            nominate,
        );
    }

    fn assume_and_bind(&mut self, info: Arc<PodInfo>, node: Arc<str>) {
        self.snap.assume_pod(info.clone(), &node);
        self.nominated.remove(&info.uid);
        self.binds_in_flight += 1;
        api::bind(&self.ctx, &self.config, info, node, self.tx.clone());
    }

    fn bound(
        &mut self,
        pod: Arc<PodInfo>,
        node: Arc<str>,
        result: Result<(), String>,
        now: Timestamp,
    ) {
        self.binds_in_flight = self.binds_in_flight.saturating_sub(1);
        match result {
            Ok(()) => {
                self.stats.bound.fetch_add(1, Ordering::Relaxed);
                if self.queue.get(&pod.uid).is_some_and(|p| p.state == PodState::InFlight) {
                    self.queue.remove(&pod.uid);
                }
                self.recorder.event(
                    &*pod.pod,
                    EventType::Normal,
                    "Scheduled",
                    format!("Successfully assigned {} to {node}", pod.key()),
                );
            }
            Err(e) => {
                self.stats.bind_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pod = %pod.key(), node = %node, error = %e, "binding failed");
                if self.snap.forget_pod(&pod.uid) {
                    self.queue.move_unschedulable(POD_GONE_PLUGINS, now);
                }
                if self.queue.get(&pod.uid).is_some_and(|p| p.state == PodState::InFlight) {
                    self.queue.retry(&pod.uid, now);
                    self.recorder.event(
                        &*pod.pod,
                        EventType::Warning,
                        "FailedScheduling",
                        api::truncate_message(format!("Binding rejected: {e}")),
                    );
                }
            }
        }
    }
}
