//! The controller manager's controllers, all on one shared set of informers.

use rudder_client::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::control_plane::ControlPlaneOptions;

/// Spawns every controller into `set`; they stop with `cancel`.
pub fn spawn_all(
    set: &mut JoinSet<()>,
    ctx: &Context,
    options: &ControlPlaneOptions,
    cancel: &CancellationToken,
) {
    use rudder_controllers::{
        garbagecollector, namespace, nodeipam, nodelifecycle, podgc, serviceaccount, tainteviction,
    };
    let c = || (ctx.clone(), cancel.clone());

    let (x, k) = c();
    set.spawn(rudder_workloads::replicaset::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(rudder_workloads::replicationcontroller::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(rudder_workloads::deployment::run(x, Default::default(), k));

    let (x, k) = c();
    set.spawn(rudder_workloads::daemonset::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(rudder_statefulset::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(rudder_batch::job::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(rudder_batch::cronjob::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(rudder_batch::ttlafterfinished::run(x, Default::default(), k));

    let (x, k) = c();
    set.spawn(rudder_pv::binder::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(rudder_pv::localpath::run(x, Default::default(), k));

    let (x, k) = c();
    set.spawn(rudder_endpoints::endpoints::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(rudder_endpoints::endpointslice::run(x, Default::default(), k));

    let (x, k) = c();
    set.spawn(garbagecollector::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(namespace::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(podgc::run(x, Default::default(), k));
    let (x, k) = c();
    set.spawn(serviceaccount::run(x, Default::default(), k));
    let (x, k) = c();
    let ipam = nodeipam::NodeIpamConfig {
        cluster_cidr: options.cluster_cidr.clone(),
        node_cidr_mask_size: options.node_cidr_mask_size,
        ..Default::default()
    };
    set.spawn(nodeipam::run(x, ipam, k));
    let (x, k) = c();
    let lifecycle = nodelifecycle::NodeLifecycleConfig {
        node_monitor_grace_period: options.node_monitor_grace_period,
        ..Default::default()
    };
    set.spawn(nodelifecycle::run(x, lifecycle, k));
    let (x, k) = c();
    let eviction = tainteviction::TaintEvictionConfig {
        default_toleration_seconds: i64::from(options.default_toleration_seconds),
        ..Default::default()
    };
    set.spawn(tainteviction::run(x, eviction, k));
}
