//! The labels the kubelet puts on sandboxes and containers, upstream's names, so that a
//! restarted agent can tell whose they are.

pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Container annotation: a hash of the container's spec (a changed image restarts it).
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Container annotation: the pod's termination grace period, for stops without the pod.
pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Container annotation: init container (`true`) or app container.
pub const INIT_CONTAINER: &str = "rudder.dev/init-container";
