//! `rudder server --datastore etcd://...` against a real etcd, `rudder kubeconfig`, and the
//! status subresource, through kubectl.

mod common;

use std::process::Command;

use common::Server;
use rudder_store_etcd::process::EtcdProcess;

#[test]
fn etcd_datastore_serves_kubectl() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let etcd = runtime.block_on(EtcdProcess::start()).expect("start etcd");
    let url = format!("etcd://{}", etcd.client_url().trim_start_matches("http://"));
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &["--datastore", &url]);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: in-etcd\ndata:\n  k: v\n";
    assert!(s.kubectl_stdin(&["apply", "-f", "-"], Some(cm)).contains("configmap/in-etcd created"));
    assert!(
        s.kubectl_stdin(&["apply", "-f", "-"], Some(cm)).contains("configmap/in-etcd unchanged")
    );
    let ready = s.kubectl(&["get", "--raw", "/readyz?verbose"]);
    assert!(ready.contains("[+]storage ok"), "{ready}");
    let cs = s.kubectl(&["get", "cs", "storage"]);
    assert!(cs.contains("etcd ok"), "{cs}");
    // The object really lives in etcd: a second server on the same etcd sees it.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Server::start_with(other_dir.path(), &["--datastore", &url]);
    assert_eq!(other.kubectl(&["get", "cm", "in-etcd", "-o", "jsonpath={.data.k}"]), "v");
    drop(other);
    drop(s);
    drop(etcd);
}

#[test]
fn kubeconfig_command_prints_the_admin_kubeconfig() {
    let s = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["kubeconfig", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed, std::fs::read_to_string(s.kubeconfig()).unwrap());
    assert!(
        printed.contains("client-certificate-data:")
            && printed.contains("server: https://127.0.0.1:")
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["kubeconfig", "--data-dir", "/nonexistent/rudder"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("has `rudder server` run with this data dir?")
    );
}

#[test]
fn status_subresource_splits_spec_and_status() {
    // The API alone: a deployment controller would rewrite the status under the test.
    let s = Server::start_args(&["--disable-controller-manager"]);
    s.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2,"readyReplicas":1},"spec":{"replicas":9}}"#,
    ]);
    let got = s.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.status.readyReplicas} {.metadata.generation}",
    ]);
    assert_eq!(got, "2 1 1", "a status write changes only the status");
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"status":{"readyReplicas":7},"spec":{"replicas":3}}"#,
    ]);
    let got = s.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.status.readyReplicas} {.metadata.generation}",
    ]);
    assert_eq!(got, "3 1 2", "a main-resource write keeps the status");
    let table = s.kubectl(&["get", "deploy", "web"]);
    assert!(table.contains("1/3"), "{table}");
}

#[test]
fn nodes_print_upstream_columns() {
    let s = Server::start();
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 192.0.2.5\n  conditions:\n  - type: Ready\n    status: \"True\"\n  nodeInfo:\n    kubeletVersion: v1.33.0\n    osImage: Debian\n    kernelVersion: \"6.18\"\n    containerRuntimeVersion: rudder://0.1\n    architecture: amd64\n    bootID: \"\"\n    machineID: \"\"\n    systemUUID: \"\"\n    kubeProxyVersion: \"\"\n    operatingSystem: linux\n";
    s.kubectl_stdin(&["apply", "-f", "-"], Some(node));
    let wide = s.kubectl(&["get", "nodes", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[0], row[1], row[4], row[5]), ("n1", "Ready", "v1.33.0", "192.0.2.5"));
}

/// The holder of a `kube-system` Lease, as `rudder` identities are `<hostname>_<server-id>`.
fn lease_holder(s: &Server, lease: &str) -> Option<String> {
    let out = s.kubectl_raw(
        &["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}"],
        None,
    );
    let holder = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !holder.is_empty()).then_some(holder)
}

fn server_id(s: &Server) -> String {
    std::fs::read_to_string(s.data_dir.join("server-id")).unwrap().trim().to_owned()
}

#[test]
fn servers_sharing_etcd_elect_one_scheduler_and_controller_manager() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let etcd = runtime.block_on(EtcdProcess::start()).expect("start etcd");
    let url = format!("etcd://{}", etcd.client_url().trim_start_matches("http://"));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start_with(dir_a.path(), &["--datastore", &url]);
    let b = Server::start_with(dir_b.path(), &["--datastore", &url]);
    let (id_a, id_b) = (server_id(&a), server_id(&b));
    assert_ne!(id_a, id_b);
    let holders = common::eventually("both Leases held", || {
        Some((lease_holder(&a, "kube-scheduler")?, lease_holder(&a, "kube-controller-manager")?))
    });
    for h in [&holders.0, &holders.1] {
        assert!(h.ends_with(&id_a) || h.ends_with(&id_b), "unknown holder {h}");
    }
    // Both servers see the same holders: one active scheduler, one controller manager.
    assert_eq!(lease_holder(&b, "kube-scheduler").as_ref(), Some(&holders.0));

    // The scheduler's leader dies without releasing its Lease: the other server takes over
    // once the Lease expires, and its control plane does the work.
    let (dead, survivor, survivor_id) =
        if holders.0.ends_with(&id_a) { (a, b, id_b) } else { (b, a, id_a) };
    drop(dead);
    common::eventually("the survivor leads both", || {
        let s = lease_holder(&survivor, "kube-scheduler")?;
        let c = lease_holder(&survivor, "kube-controller-manager")?;
        (s.ends_with(&survivor_id) && c.ends_with(&survivor_id)).then_some(())
    });
    let _sim = common::Sim::start(&survivor, &["--count", "1"]);
    survivor.kubectl(&["create", "deployment", "web", "--image=busybox", "--replicas=2"]);
    survivor.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    drop(survivor);
    drop(etcd);
}
