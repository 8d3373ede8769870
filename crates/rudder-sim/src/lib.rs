//! Simulated nodes (like kwok): K Node objects served by one light process, without kubelet
//! or containers. They register, heartbeat and run pods the way a kubelet reports them, so
//! the scheduler, the controllers and `kubectl` see real-looking nodes and pods. This is how
//! controller and scheduler tests run fast and without root, and how the scale benchmark
//! gets thousands of nodes. The `rudder sim nodes --count K` command is a thin layer over
//! [`SimNodes`] and [`SimConfig`] (whose parsers take the flags' text).
//!
//! ```no_run
//! # async fn example(client: kube::Client) -> Result<(), rudder_sim::SimError> {
//! use rudder_sim::{SimConfig, SimNodes};
//! let mut config = SimConfig::with_count(100);
//! config.add_label("team=search")?;
//! config.add_taint("dedicated=sim:NoSchedule")?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let sim = SimNodes::start(client, config, cancel.clone()).await?;
//! sim.wait_registered().await?;
//! sim.stop_node("sim-node-7")?; // as if it lost power
//! sim.start_node("sim-node-7")?; // back: Ready=True again
//! # Ok(()) }
//! ```
//!
//! # Nodes
//!
//! - Names `<prefix>-<i>` (default `sim-node-0` ...) or an explicit list. Labels
//!   `kubernetes.io/hostname`, `kubernetes.io/os=linux`, `kubernetes.io/arch=amd64` (and the
//!   `beta.` twins), `type=sim` (marks simulated nodes), optional
//!   `topology.kubernetes.io/zone` (round-robin over the configured zones) and `region`, and
//!   the configured labels; annotation `sim.rudder.dev/node: "true"`; the configured taints.
//! - Status: capacity/allocatable (default 4 cpu, 16Gi memory, 110 pods, 100Gi
//!   ephemeral-storage), conditions MemoryPressure/DiskPressure/PIDPressure False and Ready
//!   True with the kubelet's reasons and messages, addresses InternalIP (node i gets the
//!   (i+1)-th address of `node_ip_cidr`, default 198.18.0.0/15) and Hostname, nodeInfo,
//!   kubelet port 10250 (nothing listens there). Written through `nodes/status`.
//! - An existing Node of the same name is taken over: our labels and annotation are added,
//!   the status is re-posted; its taints, other labels and spec stay.
//! - A Lease per node in `kube-node-lease` (holder = node name, `leaseDurationSeconds` 40,
//!   owned by the Node) renewed every `heartbeat_interval` (10 s). Heartbeats are spread
//!   evenly over the interval, sent in ticks of a twentieth of it (at most 100 ms: those due
//!   within a tick go together, so the store commits their writes together) and run with
//!   bounded concurrency.
//! - The status is posted again when what the API shows differs from a healthy node's (for
//!   example after the node lifecycle controller set Ready=Unknown), when a stopped node is
//!   started, and every `status_report_interval` (5 min) to refresh the heartbeat times.
//! - [`SimNodes::stop_node`]: the node loses power — no lease renewals, no status posts, its
//!   pods freeze as they are in the API. [`SimNodes::start_node`]: it comes back.
//!
//! # Pods
//!
//! One Pod watch over all bound pods serves every node. A pod bound to one of our nodes starts
//! `ready_delay` (10 ms) after it is seen: phase Running, conditions PodReadyToStartContainers,
//! Initialized, ContainersReady, Ready True (and PodScheduled when the binding did not set it),
//! hostIP/hostIPs, podIP/podIPs from the node's `spec.podCIDR` (or, without one, the node's
//! `/node_cidr_mask_size` block of `cluster_cidr`, default 10.42.0.0/16, block i for node i;
//! `hostNetwork` pods get the node's address), startTime, qosClass (as upstream computes it),
//! containerStatuses (running, ready, started, restartCount, image, imageID `sim://<image>`,
//! containerID `sim://<pod uid>-<container>`, with `-<n>` appended after the n-th restart),
//! initContainerStatuses (terminated, Completed; sidecars — init containers with
//! `restartPolicy: Always` — running and ready).
//!
//! - `restartPolicy: Never` or `OnFailure`: the containers exit 0 after `succeed_after`
//!   (1 s; `None`: never) and the pod Succeeds (containers terminated `Completed`, Ready
//!   False with reason PodCompleted). `restartPolicy: Always`: the containers run until the
//!   pod is deleted, unless annotated.
//! - After an exit the restart policy decides: Always (any code) and OnFailure (non-zero)
//!   restart the containers — restartCount grows, lastState.terminated carries the exit code
//!   and reason (`Completed` for 0, `Error` otherwise), Ready is False while they are down —
//!   with upstream's crash-loop back-off: the first restart is immediate, later ones wait
//!   `crash_loop_backoff_base` (10 s) doubling up to `crash_loop_backoff_max` (5 min), showing
//!   state.waiting reason `CrashLoopBackOff`; a container that ran for twice the cap starts
//!   over at the base. Never with a non-zero code: phase Failed (containers terminated,
//!   reason `Error`; Ready reason PodFailed). OnFailure or Never with 0: Succeeded.
//! - `activeDeadlineSeconds`: when it passes the pod fails (reason `DeadlineExceeded`,
//!   containers killed with exit code 137).
//! - Readiness gates: Ready is True only when every gate's condition is True (others write
//!   those; the watch brings the changes).
//! - A pod with a deletionTimestamp is deleted with grace period 0 and its uid as
//!   precondition (what a kubelet does once the containers are gone). Pods deleted, or
//!   replaced by a pod of the same name with another uid, are forgotten (timers dropped,
//!   address freed). Terminated pods free their address too (the status keeps it).
//! - Status writes happen only when the status changes, at most
//!   `max_concurrent_pod_writes` at once, each with a deadline; failures are retried with
//!   back-off up to 10 times. Per pod the simulator keeps a small entry and at most a few
//!   timer-heap entries; one task drives all pods.
//! - A restarted simulator adopts Running pods from what their status shows (address,
//!   restart count, start times) without rewriting them.
//!
//! ## Annotations (per pod; they apply to every app container of the pod)
//!
//! | annotation | value | effect |
//! | --- | --- | --- |
//! | `sim.rudder.dev/exit-after-ms` | milliseconds | the containers exit this long after each start (any restart policy) |
//! | `sim.rudder.dev/exit-code` | integer, default 0 | the exit code; alone (without `exit-after-ms`) the exit comes after `succeed_after`, also for `Always` pods |
//! | `sim.rudder.dev/ready-after-ms` | milliseconds | the containers turn ready this long after each start (Running but not Ready before) |
//! | `sim.rudder.dev/not-ready` | `"true"` | the containers run but are never ready; removing the annotation makes them ready |
//! | `sim.rudder.dev/run-forever` | `"true"` | the containers never exit, whatever the restart policy and `succeed_after` |
//!
//! The first two are the names the simulated container runtime (`rudder-runtime`'s
//! `simulated`) reads. Values that do not parse are ignored. The annotations are read when
//! the simulator first sees the pod, except `not-ready`, which is followed live.

mod cidr;
mod config;
mod engine;
mod error;
mod node_object;
mod nodes;
mod pod_info;
mod pod_io;
mod pod_state;
mod shared;
mod sim;
mod unread;

pub use cidr::Ipv4Cidr;
pub use config::{
    SIM_NODE_ANNOTATION, SIM_NODE_LABEL, SimConfig, parse_duration, parse_label, parse_resource,
    parse_taint,
};
pub use error::SimError;
pub use node_object::{KUBELET_PORT, NODE_LEASE_NAMESPACE};
pub use pod_info::{
    EXIT_AFTER_MS_ANNOTATION, EXIT_CODE_ANNOTATION, NOT_READY_ANNOTATION,
    READY_AFTER_MS_ANNOTATION, RUN_FOREVER_ANNOTATION,
};
pub use sim::SimNodes;

#[cfg(test)]
mod tests {
    #[test]
    fn annotation_names_match_the_simulated_runtime() {
        assert_eq!(
            crate::EXIT_AFTER_MS_ANNOTATION,
            rudder_runtime::simulated::EXIT_AFTER_MS_ANNOTATION
        );
        assert_eq!(crate::EXIT_CODE_ANNOTATION, rudder_runtime::simulated::EXIT_CODE_ANNOTATION);
    }
}
