//! The ServiceAccount controller against a real API server.

mod common;

use common::*;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams};
use rudder_client::Context;
use rudder_controllers::serviceaccount::{self, ServiceAccountConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_again_and_again() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "early").await;
    let controller = {
        let client = client.clone();
        spawn(move |cancel| async move {
            let ctx = Context::new(client, cancel.clone());
            serviceaccount::run(ctx, ServiceAccountConfig::default(), cancel).await;
        })
    };
    let early: Api<ServiceAccount> = Api::namespaced(client.clone(), "early");
    eventually("default in a namespace that existed before", || async {
        early.get_opt("default").await.ok().flatten()
    })
    .await;

    create_namespace(&client, "team").await;
    let team: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let first = eventually("default in a new namespace", || async {
        team.get_opt("default").await.ok().flatten()
    })
    .await;
    team.delete("default", &DeleteParams::default()).await.unwrap();
    let first_uid = first.metadata.uid.clone();
    eventually("default to be created again", || async {
        let sa = team.get_opt("default").await.ok().flatten()?;
        (sa.metadata.uid != first_uid).then_some(())
    })
    .await;
    controller.cancel();
}
