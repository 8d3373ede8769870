//! The whole node path with real parts: the busybox test image pushed to a local
//! docker-registry with htpasswd auth, pulled with imagePullSecret-style credentials into
//! the layer store, and run as a pod with its own network.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::*;
use rudder_images::{ImageStore, testing};
use rudder_runtime::{ContainerConfig, ContainerMetadata, ContainerState, Runtime, RuntimeError};
use rudder_runtime_native::NativeRuntime;
use rudder_runtime_native::image_adapter::ImageStoreAdapter;
use rudder_runtime_native::layout::Layout;

fn docker_config(host: &str, user: &str, password: &str) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    serde_json::to_vec(&serde_json::json!({"auths": {host: {"auth": auth}}})).unwrap()
}

#[tokio::test]
async fn an_image_pulled_with_credentials_runs_as_a_pod() {
    let registry = testing::Registry::start(Some(("alice", "s3cret"))).unwrap();
    let image = testing::busybox().unwrap();
    testing::push(&registry, "library/busybox:1.0", &image).await.unwrap();
    let reference = registry.reference("library/busybox:1.0");

    let node = NodeNet::new();
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(ImageStore::open(dir.path().join("images"), registry.store_options()).unwrap());
    let runtime = Arc::new(
        NativeRuntime::new(
            Layout::new(dir.path().join("root"), dir.path().join("run")),
            shim(),
            Arc::new(ImageStoreAdapter::new(store.clone())),
            node.adapter.clone(),
        )
        .unwrap(),
    );
    let _cleanup = Cleanup { runtime: runtime.clone(), root: dir.path().to_owned() };
    let rt = &runtime;

    // Without credentials, and with a wrong password, the registry refuses.
    let err = rt.pull_image(&reference, &[]).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImagePull { .. }), "{err}");
    let wrong = docker_config(registry.host(), "alice", "nope");
    let err = rt.pull_image(&reference, &[wrong]).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("unauthorized") || err.to_string().contains("401"),
        "{err}"
    );
    assert!(rt.image_status(&reference).await.unwrap().is_none());

    let info = rt
        .pull_image(&reference, &[docker_config(registry.host(), "alice", "s3cret")])
        .await
        .unwrap();
    assert!(info.id.starts_with("sha256:"), "{info:?}");
    assert_eq!(rt.image_status(&reference).await.unwrap().unwrap().id, info.id);

    let cfg = pod("pulled", false);
    let sb = rt.run_pod_sandbox(&cfg).await.unwrap();
    let c = ContainerConfig {
        metadata: ContainerMetadata { name: "web".into(), attempt: 0 },
        image: reference.clone(),
        command: sh("echo from-the-registry > /tmp/index.html; exec httpd -f -p 80 -h /tmp"),
        ..Default::default()
    };
    let id = rt.create_container(&sb, &c, &cfg).await.unwrap();
    rt.start_container(&id).await.unwrap();
    let st = rt.container_status(&id).await.unwrap();
    assert_eq!((st.state, st.image_ref.as_str()), (ContainerState::Running, info.id.as_str()));
    let r = rt
        .exec_sync(&id, &sh("echo $((6*7)); wget -qO- http://127.0.0.1/index.html"), 10)
        .await
        .unwrap();
    assert_eq!(
        (String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code),
        ("42\nfrom-the-registry\n", 0)
    );

    // The image's default command (Cmd ["sh"]) is used when the pod gives none: sh with
    // stdin at /dev/null exits 0 at once.
    let id2 = rt
        .create_container(
            &sb,
            &ContainerConfig {
                metadata: ContainerMetadata { name: "default-cmd".into(), attempt: 0 },
                image: reference.clone(),
                ..Default::default()
            },
            &cfg,
        )
        .await
        .unwrap();
    rt.start_container(&id2).await.unwrap();
    let st = eventually("the default command to exit", 20, || async {
        let st = rt.container_status(&id2).await.unwrap();
        (st.state == ContainerState::Exited).then_some(st)
    })
    .await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));

    // Removing the image and collecting garbage keeps the layers the containers use: the
    // container keeps working (a new process reads its rootfs), and a new container of the
    // removed image is refused, not half-made.
    rt.remove_image(&info.id).await.unwrap();
    assert!(rt.image_status(&info.id).await.unwrap().is_none());
    assert!(rt.list_images().await.unwrap().is_empty());
    let stats = store.gc().await.unwrap();
    assert_eq!((stats.layers_removed, stats.layers_kept), (0, 1), "{stats:?}");
    assert!(stats.blobs_removed > 0, "the image's own documents go: {stats:?}");
    let r = rt.exec_sync(&id, &sh("cat /tmp/index.html; ls /bin/busybox"), 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "from-the-registry\n/bin/busybox\n");
    let e = rt.create_container(&sb, &c, &cfg).await.unwrap_err();
    assert!(matches!(e, RuntimeError::ImageNotPresent(_)), "{e}");
    // Once the pod is gone nothing pins them.
    rt.remove_pod_sandbox(&sb).await.unwrap();
    let stats = store.gc().await.unwrap();
    assert_eq!((stats.layers_removed, stats.layers_kept), (1, 0), "{stats:?}");
}
