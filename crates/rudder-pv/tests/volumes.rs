//! The binder, the local-path provisioner and the node reclaimer against a real rudder API
//! server: objects are created as a user would, and the tests poll (generous deadline) for
//! the state upstream's controllers would reach.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use rudder_client::Context;
use rudder_pv::{binder, localpath};
use rudder_testkit::TestCluster;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

struct Env {
    _cluster: TestCluster,
    client: kube::Client,
    ctx: Context,
    cancel: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start() -> Env {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let cancel = CancellationToken::new();
    let kubeconfig = cluster.component_kubeconfig("system:kube-controller-manager", &[]);
    let own = rudder_client::client_from_kubeconfig_text(&kubeconfig).expect("component client");
    let ctx = Context::new(own, cancel.clone());
    Env { _cluster: cluster, client, ctx, cancel }
}

impl Env {
    fn binder(&self) {
        tokio::spawn(binder::run(self.ctx.clone(), Default::default(), self.cancel.clone()));
    }

    fn provisioner(&self) {
        tokio::spawn(localpath::run(self.ctx.clone(), Default::default(), self.cancel.clone()));
    }

    fn reclaimer(&self, node: &str, base: &Path) {
        tokio::spawn(localpath::run_node_reclaimer(
            self.ctx.clone(),
            node.to_owned(),
            base.to_owned(),
            self.cancel.clone(),
        ));
    }

    fn pvs(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    fn pvcs(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create<K>(&self, api: &Api<K>, v: Value) -> K
    where
        K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(v).expect("object JSON");
        api.create(&PostParams::default(), &obj).await.expect("create")
    }

    /// Polls until `check` holds for PV `name` (None: the PV is gone).
    async fn wait_pv(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(Option<&PersistentVolume>) -> bool,
    ) {
        let api = self.pvs();
        wait_for(&format!("pv {name}: {what}"), || async {
            let pv = api.get_opt(name).await.ok()?;
            check(pv.as_ref()).then_some(())
        })
        .await
    }

    async fn wait_pvc(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&PersistentVolumeClaim) -> bool,
    ) -> PersistentVolumeClaim {
        let api = self.pvcs();
        wait_for(&format!("pvc {name}: {what}"), || async {
            let pvc = api.get(name).await.ok()?;
            check(&pvc).then_some(pvc)
        })
        .await
    }

    async fn wait_event(&self, object: &str, reason: &str) -> Event {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let lp = ListParams::default().fields(&format!("involvedObject.name={object}"));
        wait_for(&format!("event {reason} on {object}"), || async {
            let list = api.list(&lp).await.ok()?;
            list.items.into_iter().find(|e| e.reason.as_deref() == Some(reason))
        })
        .await
    }
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pv_phase(pv: Option<&PersistentVolume>) -> Option<&str> {
    pv?.status.as_ref()?.phase.as_deref()
}

fn pvc_phase(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.status.as_ref()?.phase.as_deref()
}

fn annotation<'a>(pvc: &'a PersistentVolumeClaim, key: &str) -> Option<&'a str> {
    pvc.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Seeds 025, 027 and 029 (StorageClass `standard`, PVs `nfsserver` and
/// `pv-selector-example`), then claims 028 and 030, as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_volumes_bind_like_upstream_and_are_reclaimed_by_policy() {
    let env = start().await;
    env.binder();
    let classes: Api<StorageClass> = Api::all(env.client.clone());
    env.create(
        &classes,
        json!({
            "metadata": { "name": "standard" }, "provisioner": "kubernetes.io/gce-pd",
            "parameters": { "type": "pd-standard", "zones": "us-central1-a, us-central1-b" },
            "reclaimPolicy": "Delete"
        }),
    )
    .await;
    let pvs = env.pvs();
    env.create(
        &pvs,
        json!({
            "metadata": { "name": "nfsserver" },
            "spec": { "capacity": { "storage": "50Gi" }, "volumeMode": "Filesystem",
                      "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                      "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "slow",
                      "mountOptions": ["hard", "nfsvers=4.1"],
                      "nfs": { "path": "/exports", "server": "172.22.0.42" } }
        }),
    )
    .await;
    env.create(
        &pvs,
        json!({
            "metadata": { "name": "pv-selector-example", "labels": { "type": "hostpath" } },
            "spec": { "capacity": { "storage": "2Gi" }, "accessModes": ["ReadWriteMany"],
                      "hostPath": { "path": "/mnt/data" } }
        }),
    )
    .await;
    for name in ["nfsserver", "pv-selector-example"] {
        env.wait_pv(name, "Available", |pv| pv_phase(pv) == Some("Available")).await;
    }
    let pvcs = env.pvcs();
    env.create(&pvcs, json!({
        "metadata": { "name": "pvc-sc-example" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } },
                  "storageClassName": "slow" }
    }))
    .await;
    let selector = env
        .create(
            &pvcs,
            json!({
                "metadata": { "name": "pvc-selector-example" },
                "spec": { "accessModes": ["ReadWriteMany"],
                          "resources": { "requests": { "storage": "1Gi" } },
                          "selector": { "matchLabels": { "type": "hostpath" } } }
            }),
        )
        .await;
    // Too big for anything, no class: upstream's FailedBinding event.
    env.create(&pvcs, json!({
        "metadata": { "name": "too-big" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Ti" } },
                  "storageClassName": "" }
    }))
    .await;

    // 028 asks for class "slow" (no such StorageClass: binds at once) and gets nfsserver.
    let sc = env.wait_pvc("pvc-sc-example", "Bound", |c| pvc_phase(c) == Some("Bound")).await;
    assert_eq!(sc.spec.as_ref().unwrap().volume_name.as_deref(), Some("nfsserver"));
    assert_eq!(annotation(&sc, "pv.kubernetes.io/bind-completed"), Some("yes"));
    assert_eq!(annotation(&sc, "pv.kubernetes.io/bound-by-controller"), Some("yes"));
    let status = sc.status.clone().unwrap();
    assert_eq!(status.capacity.unwrap()["storage"].0, "50Gi");
    assert_eq!(status.access_modes.unwrap(), ["ReadWriteOnce", "ReadWriteMany"]);
    let nfs = pvs.get("nfsserver").await.unwrap();
    let claim_ref = nfs.spec.as_ref().unwrap().claim_ref.clone().unwrap();
    assert_eq!(claim_ref.name.as_deref(), Some("pvc-sc-example"));
    assert_eq!(claim_ref.uid, sc.metadata.uid);
    assert_eq!(pv_phase(Some(&nfs)), Some("Bound"));
    assert_eq!(nfs.metadata.annotations.unwrap()["pv.kubernetes.io/bound-by-controller"], "yes");

    // 030 has no class. Without a default class assigned at creation it matches the
    // class-less, labelled 029; with one (an admission plugin) it waits for that class.
    let class_at_creation = selector.spec.as_ref().unwrap().storage_class_name.clone();
    if class_at_creation.is_none() {
        let c =
            env.wait_pvc("pvc-selector-example", "Bound", |c| pvc_phase(c) == Some("Bound")).await;
        assert_eq!(c.spec.unwrap().volume_name.as_deref(), Some("pv-selector-example"));
        env.wait_pv("pv-selector-example", "Bound", |pv| pv_phase(pv) == Some("Bound")).await;
    } else {
        // Upstream on a cluster with a default WaitForFirstConsumer class: it waits.
        env.wait_pvc("pvc-selector-example", "Pending", |c| pvc_phase(c) == Some("Pending")).await;
        env.wait_event("pvc-selector-example", "WaitForFirstConsumer").await;
    }
    let ev = env.wait_event("too-big", "FailedBinding").await;
    assert_eq!(
        ev.message.as_deref(),
        Some("no persistent volumes available for this claim and no storage class is set")
    );
    assert_eq!(pvc_phase(&pvcs.get("too-big").await.unwrap()), Some("Pending"));

    // Reclaim policy Delete: the volume goes with its claim.
    pvcs.delete("pvc-sc-example", &DeleteParams::default()).await.unwrap();
    env.wait_pv("nfsserver", "deleted", |pv| pv.is_none()).await;
    // Retain (the default): Released, and it stays, still naming the old claim. (With the
    // default class given to 030 at creation, a claim opting out of classes takes 029.)
    let retain_claim = if class_at_creation.is_none() {
        "pvc-selector-example"
    } else {
        env.create(
            &pvcs,
            json!({
                "metadata": { "name": "pvc-selector-no-class" },
                "spec": { "accessModes": ["ReadWriteMany"], "storageClassName": "",
                          "resources": { "requests": { "storage": "1Gi" } },
                          "selector": { "matchLabels": { "type": "hostpath" } } }
            }),
        )
        .await;
        let c =
            env.wait_pvc("pvc-selector-no-class", "Bound", |c| pvc_phase(c) == Some("Bound")).await;
        assert_eq!(c.spec.unwrap().volume_name.as_deref(), Some("pv-selector-example"));
        "pvc-selector-no-class"
    };
    pvcs.delete(retain_claim, &DeleteParams::default()).await.unwrap();
    env.wait_pv("pv-selector-example", "Released", |pv| pv_phase(pv) == Some("Released")).await;
    let pv = pvs.get("pv-selector-example").await.unwrap();
    assert_eq!(pv.spec.unwrap().claim_ref.unwrap().name.as_deref(), Some(retain_claim));
    // A new claim with the same name does not get the released volume back.
    env.create(
        &pvcs,
        json!({
            "metadata": { "name": retain_claim },
            "spec": { "accessModes": ["ReadWriteMany"], "storageClassName": "",
                      "resources": { "requests": { "storage": "1Gi" } },
                      "selector": { "matchLabels": { "type": "hostpath" } } }
        }),
    )
    .await;
    env.wait_event(retain_claim, "FailedBinding").await;
    let pv = pvs.get("pv-selector-example").await.unwrap();
    assert_eq!(pv_phase(Some(&pv)), Some("Released"));
}

/// A claim created while no default class exists gets one once a default class appears
/// (upstream's retroactive default StorageClass assignment, done by this controller).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_class_is_assigned_retroactively() {
    let env = start().await;
    // No default class (removed before the binder starts, so its cache never has one).
    let classes: Api<StorageClass> = Api::all(env.client.clone());
    let _ = classes.delete("local-path", &DeleteParams::default()).await;
    env.binder();
    let pvcs = env.pvcs();
    let created = env
        .create(
            &pvcs,
            json!({
                "metadata": { "name": "early" },
                "spec": { "accessModes": ["ReadWriteOnce"],
                          "resources": { "requests": { "storage": "1Gi" } } }
            }),
        )
        .await;
    assert!(created.spec.unwrap().storage_class_name.is_none());
    env.wait_event("early", "FailedBinding").await;
    env.create(&classes, json!({
        "metadata": { "name": "late-default",
                      "annotations": { "storageclass.kubernetes.io/is-default-class": "true" } },
        "provisioner": "example.com/none", "volumeBindingMode": "WaitForFirstConsumer"
    }))
    .await;
    env.wait_pvc("early", "class late-default", |c| {
        c.spec.as_ref().unwrap().storage_class_name.as_deref() == Some("late-default")
    })
    .await;
    env.wait_event("early", "WaitForFirstConsumer").await;
}

/// A user pre-binds both ways: a PV with a claimRef and a claim naming a volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prebound_volumes_and_claims() {
    let env = start().await;
    env.binder();
    let pvs = env.pvs();
    let pvcs = env.pvcs();
    env.create(
        &pvs,
        json!({
            "metadata": { "name": "reserved" },
            "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                      "hostPath": { "path": "/mnt/r" },
                      "claimRef": { "namespace": "default", "name": "wants-reserved" } }
        }),
    )
    .await;
    env.create(
        &pvs,
        json!({
            "metadata": { "name": "named" },
            "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                      "hostPath": { "path": "/mnt/n" } }
        }),
    )
    .await;
    // This one would take "reserved" if it were free (same size); it must get nothing.
    env.create(
        &pvcs,
        json!({
            "metadata": { "name": "other" },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                      "resources": { "requests": { "storage": "1Gi" } }, "volumeName": "named" }
        }),
    )
    .await;
    env.create(
        &pvcs,
        json!({
            "metadata": { "name": "wants-reserved" },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                      "resources": { "requests": { "storage": "1Gi" } } }
        }),
    )
    .await;
    let c = env.wait_pvc("wants-reserved", "Bound", |c| pvc_phase(c) == Some("Bound")).await;
    assert_eq!(c.spec.as_ref().unwrap().volume_name.as_deref(), Some("reserved"));
    let pv = pvs.get("reserved").await.unwrap();
    assert_eq!(pv.spec.as_ref().unwrap().claim_ref.as_ref().unwrap().uid, c.metadata.uid);
    // Pre-bound by the user: not marked as bound by the controller.
    assert!(
        pv.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("pv.kubernetes.io/bound-by-controller"))
    );
    let o = env.wait_pvc("other", "Bound", |c| pvc_phase(c) == Some("Bound")).await;
    assert_eq!(o.spec.as_ref().unwrap().volume_name.as_deref(), Some("named"));
    assert_eq!(annotation(&o, "pv.kubernetes.io/bound-by-controller"), None);
    // The volume's side is lost: the claim is Lost.
    pvs.delete("named", &DeleteParams::default()).await.unwrap();
    env.wait_pvc("other", "Lost", |c| pvc_phase(c) == Some("Lost")).await;
    env.wait_event("other", "ClaimLost").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_first_consumer_then_local_path_provisioning_and_node_reclaim() {
    let env = start().await;
    let base = tempfile::tempdir().expect("temp dir");
    env.binder();
    env.provisioner();
    env.reclaimer("n1", base.path());
    // The API server makes this class at start; made here if it did not.
    let classes: Api<StorageClass> = Api::all(env.client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": { "name": "local-path",
                      "annotations": { "storageclass.kubernetes.io/is-default-class": "true" } },
        "provisioner": "rudder.dev/local-path", "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer"
    }))
    .unwrap();
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create class: {e}"),
    }
    let nodes: Api<Node> = Api::all(env.client.clone());
    env.create(
        &nodes,
        json!({
            "metadata": { "name": "n1", "labels": { "kubernetes.io/hostname": "n1" },
                          "annotations": { "rudder.dev/local-path-dir": base.path() } }
        }),
    )
    .await;
    let pvcs = env.pvcs();
    // No class: the default one is assigned (retroactively, by the controller).
    let created = env
        .create(
            &pvcs,
            json!({
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"],
                          "resources": { "requests": { "storage": "1Gi" } } }
            }),
        )
        .await;
    let uid = created.metadata.uid.clone().unwrap();
    env.wait_pvc("data", "class local-path", |c| {
        c.spec.as_ref().unwrap().storage_class_name.as_deref() == Some("local-path")
    })
    .await;
    let ev = env.wait_event("data", "WaitForFirstConsumer").await;
    assert_eq!(
        ev.message.as_deref(),
        Some("waiting for first consumer to be created before binding")
    );
    let c = env.wait_pvc("data", "Pending", |c| pvc_phase(c) == Some("Pending")).await;
    assert!(c.spec.unwrap().volume_name.is_none());
    assert!(env.pvs().list(&ListParams::default()).await.unwrap().items.is_empty());

    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    env.create(&pods, json!({
        "metadata": { "name": "user" },
        "spec": { "nodeName": "n1",
                  "containers": [{ "name": "c", "image": "busybox",
                                   "volumeMounts": [{ "name": "d", "mountPath": "/d" }] }],
                  "volumes": [{ "name": "d", "persistentVolumeClaim": { "claimName": "data" } }] }
    }))
    .await;
    let c = env.wait_pvc("data", "Bound", |c| pvc_phase(c) == Some("Bound")).await;
    let pv_name = format!("pvc-{uid}");
    assert_eq!(c.spec.as_ref().unwrap().volume_name.as_deref(), Some(pv_name.as_str()));
    assert_eq!(annotation(&c, "volume.kubernetes.io/selected-node"), Some("n1"));
    assert_eq!(
        annotation(&c, "volume.kubernetes.io/storage-provisioner"),
        Some("rudder.dev/local-path")
    );
    assert_eq!(
        annotation(&c, "volume.beta.kubernetes.io/storage-provisioner"),
        Some("rudder.dev/local-path")
    );
    let pv = env.pvs().get(&pv_name).await.unwrap();
    let spec = pv.spec.clone().unwrap();
    let dir = base.path().join(format!("{pv_name}_default_data"));
    let host_path = spec.host_path.unwrap();
    assert_eq!(Path::new(&host_path.path), dir);
    assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
    let term = &spec.node_affinity.unwrap().required.unwrap().node_selector_terms[0];
    let req = &term.match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (req.key.as_str(), req.values.clone().unwrap()),
        ("kubernetes.io/hostname", vec!["n1".to_owned()])
    );
    assert_eq!(
        pv.metadata.annotations.as_ref().unwrap()["pv.kubernetes.io/provisioned-by"],
        "rudder.dev/local-path"
    );
    assert_eq!(pv_phase(Some(&pv)), Some("Bound"));
    let ev = env.wait_event("data", "ProvisioningSucceeded").await;
    assert_eq!(ev.message, Some(format!("Successfully provisioned volume {pv_name}")));

    // The kubelet would create the directory when mounting it.
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/file"), b"data").unwrap();
    pods.delete("user", &DeleteParams::default()).await.unwrap();
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    env.wait_pv(&pv_name, "deleted", |pv| pv.is_none()).await;
    assert!(!dir.exists(), "the volume's directory is removed");
    assert!(base.path().exists(), "the base directory stays");
}

/// The reclaimer alone, on volumes a binder released: it never removes anything outside
/// its base directory, and a symlink in a volume's place is removed, not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reclaimer_stays_inside_its_directory() {
    let env = start().await;
    let base = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("keep"), b"precious").unwrap();
    let link = base.path().join("pvc-link_default_x");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    let escaping = outside.path().join("pvc-escape_default_y");
    std::fs::create_dir(&escaping).unwrap();
    let released = |name: &str, path: &Path, node: &str| {
        json!({
            "metadata": { "name": name, "annotations": {
                "pv.kubernetes.io/provisioned-by": "rudder.dev/local-path",
                "rudder.dev/local-path-node": node } },
            "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                      "persistentVolumeReclaimPolicy": "Delete",
                      "hostPath": { "path": path, "type": "DirectoryOrCreate" },
                      "claimRef": { "namespace": "default", "name": "gone", "uid": "u" } },
            "status": { "phase": "Released" }
        })
    };
    let pvs = env.pvs();
    env.create(&pvs, released("pvc-link", &link, "n1")).await;
    env.create(&pvs, released("pvc-escape", &escaping, "n1")).await;
    let other_node = base.path().join("pvc-other_default_z");
    std::fs::create_dir(&other_node).unwrap();
    env.create(&pvs, released("pvc-other", &other_node, "n2")).await;
    env.reclaimer("n1", base.path());
    env.wait_pv("pvc-link", "deleted", |pv| pv.is_none()).await;
    assert!(std::fs::symlink_metadata(&link).is_err(), "the symlink is removed");
    assert_eq!(std::fs::read(outside.path().join("keep")).unwrap(), b"precious");
    let api: Api<Event> = Api::namespaced(env.client.clone(), "default");
    wait_for("VolumeFailedDelete on pvc-escape", || async {
        let lp = ListParams::default().fields("involvedObject.name=pvc-escape");
        let list = api.list(&lp).await.ok()?;
        list.items.iter().any(|e| e.reason.as_deref() == Some("VolumeFailedDelete")).then_some(())
    })
    .await;
    assert!(escaping.exists(), "a directory outside the base is never removed");
    assert!(pvs.get_opt("pvc-escape").await.unwrap().is_some());
    assert!(other_node.exists(), "another node's volume is left alone");
    assert!(pvs.get_opt("pvc-other").await.unwrap().is_some());
}
