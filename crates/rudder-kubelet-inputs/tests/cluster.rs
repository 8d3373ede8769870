//! KubeSource against a real in-process API server: configMap, secret and projected token
//! volumes of a pod created through the API, refreshed after an update.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, Pod, PodSpec, ProjectedVolumeSource, Secret,
    SecretVolumeSource, Service, ServiceAccount, ServiceAccountTokenProjection, ServicePort,
    ServiceSpec, Volume, VolumeProjection,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rudder_kubelet_inputs::volumes::mount::unmount_all_under;
use rudder_kubelet_inputs::{KubeSource, NodeInfoForVolumes, ObjectSource, VolumeManager};

fn named<T: Default>(name: &str, set: impl FnOnce(&mut T) -> &mut kube::api::ObjectMeta) -> T {
    let mut t = T::default();
    set(&mut t).name = Some(name.into());
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_secret_and_token_volumes_from_the_api() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let ns = "default";
    let pp = PostParams::default();

    let mut cm: ConfigMap = named("settings", |c: &mut ConfigMap| &mut c.metadata);
    cm.data = Some([("app.conf".to_owned(), "v1".to_owned())].into());
    Api::<ConfigMap>::namespaced(client.clone(), ns).create(&pp, &cm).await.unwrap();
    let mut secret: Secret = named("creds", |s: &mut Secret| &mut s.metadata);
    secret.data = Some([("password".to_owned(), ByteString(b"hunter2".to_vec()))].into());
    Api::<Secret>::namespaced(client.clone(), ns).create(&pp, &secret).await.unwrap();
    let sa: ServiceAccount = named("runner", |s: &mut ServiceAccount| &mut s.metadata);
    Api::<ServiceAccount>::namespaced(client.clone(), ns).create(&pp, &sa).await.unwrap();
    let mut svc: Service = named("cache", |s: &mut Service| &mut s.metadata);
    svc.spec = Some(ServiceSpec {
        ports: Some(vec![ServicePort { port: 6379, ..Default::default() }]),
        ..Default::default()
    });
    Api::<Service>::namespaced(client.clone(), ns).create(&pp, &svc).await.unwrap();

    let volume = |name: &str| Volume { name: name.into(), ..Default::default() };
    let mut cfg = volume("cfg");
    cfg.config_map = Some(ConfigMapVolumeSource { name: "settings".into(), ..Default::default() });
    let mut sec = volume("sec");
    sec.secret =
        Some(SecretVolumeSource { secret_name: Some("creds".into()), ..Default::default() });
    let mut token = volume("token");
    token.projected = Some(ProjectedVolumeSource {
        default_mode: None,
        sources: Some(vec![VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                audience: Some("vault".into()),
                expiration_seconds: Some(3600),
                path: "token".into(),
            }),
            ..Default::default()
        }]),
    });
    let mut pod: Pod = named("p", |p: &mut Pod| &mut p.metadata);
    pod.spec = Some(PodSpec {
        containers: vec![Container {
            name: "c".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }],
        service_account_name: Some("runner".into()),
        volumes: Some(vec![cfg, sec, token]),
        ..Default::default()
    });
    let pod = Api::<Pod>::namespaced(client.clone(), ns).create(&pp, &pod).await.unwrap();

    let source = KubeSource::new(client.clone());
    assert!(source.get_config_map(ns, "nope").await.unwrap().is_none());
    let services = source.list_services(ns).await.unwrap();
    assert!(services.iter().any(|s| s.metadata.name.as_deref() == Some("cache")), "{services:?}");

    let dir = tempfile::Builder::new().prefix("kubelet-inputs-api-").tempdir().unwrap();
    let _unmount = Unmount(dir.path().to_owned());
    let manager = VolumeManager::new(dir.path().join("pods"));
    {
        let volumes = manager.setup(&pod, &source, &NodeInfoForVolumes::default()).await.unwrap();
        let cfg_dir = volumes.get("cfg").unwrap().host_path.clone();
        let sec_dir = volumes.get("sec").unwrap().host_path.clone();
        let token_dir = volumes.get("token").unwrap().host_path.clone();
        assert_eq!(std::fs::read_to_string(cfg_dir.join("app.conf")).unwrap(), "v1");
        assert_eq!(std::fs::read_to_string(sec_dir.join("password")).unwrap(), "hunter2");
        let jwt = std::fs::read_to_string(token_dir.join("token")).unwrap();
        assert_eq!(jwt.split('.').count(), 3, "a JWT: {jwt}");

        let patch = serde_json::json!({ "data": { "app.conf": "v2" } });
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .patch("settings", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        assert!(manager.refresh(&pod, &source).await.unwrap());
        assert_eq!(std::fs::read_to_string(cfg_dir.join("app.conf")).unwrap(), "v2");
        // The token is fresh: reused, so nothing else changed.
        assert!(!manager.refresh(&pod, &source).await.unwrap());
        assert_eq!(std::fs::read_to_string(token_dir.join("token")).unwrap(), jwt);
    }
    let uid = pod.metadata.uid.clone().unwrap();
    manager.teardown(&uid).await.unwrap();
    assert!(!dir.path().join("pods").join(&uid).exists());
}

/// Unmounts whatever is left under a directory, even when the test failed half-way.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = unmount_all_under(&self.0);
    }
}
