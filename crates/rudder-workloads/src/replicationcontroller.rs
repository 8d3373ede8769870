//! The ReplicationController controller: the ReplicaSet controller's logic for core/v1
//! ReplicationControllers (map selector, defaulting to the template's labels), with the same
//! event reasons, reporting as `replication-controller`.

use k8s_openapi::api::core::v1::ReplicationController;
use rudder_client::Context;
use tokio_util::sync::CancellationToken;

use crate::replicaset::{ReplicaSetConfig, run_for};

/// Same knobs as the ReplicaSet controller (upstream's `--concurrent-rc-syncs`, default 5).
pub type ReplicationControllerConfig = ReplicaSetConfig;

/// Runs the ReplicationController controller until `cancel`.
pub async fn run(ctx: Context, config: ReplicationControllerConfig, cancel: CancellationToken) {
    run_for::<ReplicationController>("replicationcontroller", ctx, config, cancel).await
}
