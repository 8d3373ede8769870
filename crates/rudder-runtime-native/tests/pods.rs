//! Pods with their own network (root, as CI runs), inside a node network namespace made by
//! the test: the seed's two-container volume example served by httpd at the pod IP,
//! localhost between containers, hostname and /etc/hosts.

mod common;

use std::io::{Read, Write};

use common::*;
use rudder_runtime::{
    ContainerConfig, ContainerMetadata, ContainerState, DnsConfig, Mount, MountSource, Runtime,
};

fn container(name: &str, command: Vec<String>, mounts: Vec<Mount>) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata { name: name.into(), attempt: 0 },
        image: "busybox".into(),
        command,
        mounts,
        ..Default::default()
    }
}

/// An HTTP GET from inside the node's netns.
fn http_get(node: &NodeNet, ip: &str, path: &str) -> Option<String> {
    let addr = format!("{ip}:80");
    let path = path.to_owned();
    rudder_net::ns::run_in_netns(Some(&node.netns), move || {
        let mut s = std::net::TcpStream::connect_timeout(
            &addr.parse().unwrap(),
            std::time::Duration::from_secs(2),
        )
        .ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    })
    .ok()
    .flatten()
}

#[tokio::test]
async fn two_containers_share_a_volume_and_the_network_and_serve_at_the_pod_ip() {
    let node = NodeNet::new();
    let t = runtime_with(node.adapter.clone());
    let rt = &t.runtime;
    let mut cfg = pod("volume-example", false);
    cfg.dns = DnsConfig {
        servers: vec!["10.43.0.10".into()],
        searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    };
    let sb = rt.run_pod_sandbox(&cfg).await.unwrap();
    let ip = rt.pod_sandbox_status(&sb).await.unwrap().ip.expect("a pod IP");

    // emptyDir: a directory of the pod's, bind-mounted into both containers.
    let html = t.dir.path().join("html");
    std::fs::create_dir(&html).unwrap();
    let vol = |ro| {
        vec![Mount {
            container_path: "/html".into(),
            source: MountSource::Bind { host_path: html.clone() },
            readonly: ro,
        }]
    };
    let writer =
        container("1st", sh("while true; do date >> /html/index.html; sleep 1; done"), vol(false));
    let server = container(
        "2nd",
        vec!["httpd".into(), "-f".into(), "-p".into(), "80".into(), "-h".into(), "/html".into()],
        vol(true),
    );
    for c in [&writer, &server] {
        let id = rt.create_container(&sb, c, &cfg).await.unwrap();
        rt.start_container(&id).await.unwrap();
    }

    // From the node: the page written by the first container, served by the second.
    let body = eventually("the page at the pod IP", 30, || async {
        http_get(&node, &ip, "/index.html").filter(|b| b.contains("200 OK") && b.contains("UTC"))
    })
    .await;
    assert!(body.contains("UTC"), "{body}");

    // Inside the pod: localhost reaches the other container; hostname and files are the pod's.
    let listed = rt.list_containers(Some(&sb)).await.unwrap();
    let writer_id = &listed.iter().find(|c| c.metadata.name == "1st").unwrap().id;
    let r = rt
        .exec_sync(writer_id, &sh("wget -qO- http://127.0.0.1/index.html | head -1"), 10)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0, "{r:?}");
    assert!(String::from_utf8_lossy(&r.stdout).contains("UTC"));
    let r = rt
        .exec_sync(
            writer_id,
            &sh(
                "hostname; cat /etc/hostname; grep volume-example /etc/hosts; cat /etc/resolv.conf",
            ),
            10,
        )
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.starts_with("volume-example\nvolume-example\n"), "{out}");
    assert!(
        out.contains(&format!("{ip}\tvolume-example"))
            || out.contains(&format!("{ip} volume-example")),
        "{out}"
    );
    assert!(out.contains("nameserver 10.43.0.10") && out.contains("ndots:5"), "{out}");
    let r = rt
        .exec_sync(writer_id, &sh("ip -4 addr show eth0 2>/dev/null || ifconfig eth0"), 10)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains(&ip), "{r:?}");

    // Removing the sandbox stops the containers and releases the network.
    rt.remove_pod_sandbox(&sb).await.unwrap();
    assert!(http_get(&node, &ip, "/").is_none());
    assert!(!std::path::Path::new(&format!("/run/netns/rudder-{sb}")).exists());
    assert!(node.adapter.network().ipam().lookup(&sb).unwrap().is_none());
}

#[tokio::test]
async fn pods_reach_each_other_by_ip() {
    let node = NodeNet::new();
    let t = runtime_with(node.adapter.clone());
    let rt = &t.runtime;
    let a = rt.run_pod_sandbox(&pod("pod-a", false)).await.unwrap();
    let b = rt.run_pod_sandbox(&pod("pod-b", false)).await.unwrap();
    let ip_b = rt.pod_sandbox_status(&b).await.unwrap().ip.unwrap();
    let srv = rt
        .create_container(
            &b,
            &container("srv", sh("echo hello-from-b > /tmp/i; httpd -f -p 80 -h /tmp"), vec![]),
            &pod("pod-b", false),
        )
        .await
        .unwrap();
    rt.start_container(&srv).await.unwrap();
    let cli = rt
        .create_container(
            &a,
            &container("cli", vec!["sleep".into(), "300".into()], vec![]),
            &pod("pod-a", false),
        )
        .await
        .unwrap();
    rt.start_container(&cli).await.unwrap();
    let out = eventually("pod b from pod a", 30, || async {
        let r = rt.exec_sync(&cli, &sh(&format!("wget -qO- http://{ip_b}/i")), 10).await.ok()?;
        (r.exit_code == 0).then(|| String::from_utf8_lossy(&r.stdout).into_owned())
    })
    .await;
    assert_eq!(out.trim(), "hello-from-b");
    assert_eq!(rt.container_status(&srv).await.unwrap().state, ContainerState::Running);
}

/// The pod's /etc files are mounted over mount points from the shared init layer: starting
/// a container writes nothing into its writable layer (no copy of /etc, no empty files).
/// A host-network pod has no hosts file of the pod's, so the image's /etc/hosts (none in
/// this image) is what the container sees, not an empty file.
#[tokio::test]
async fn the_etc_mount_points_leave_the_writable_layer_empty() {
    let node = NodeNet::new();
    let t = runtime_with(node.adapter.clone());
    let rt = &t.runtime;
    for host_network in [false, true] {
        let cfg = pod(if host_network { "on-host" } else { "own-net" }, host_network);
        let sb = rt.run_pod_sandbox(&cfg).await.unwrap();
        let id = rt
            .create_container(
                &sb,
                &container("c", vec!["sleep".into(), "300".into()], vec![]),
                &cfg,
            )
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        let r = rt
            .exec_sync(&id, &sh("cat /etc/hostname; test -e /etc/hosts && echo hosts"), 10)
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&r.stdout).into_owned();
        assert!(out.starts_with(&format!("{}\n", cfg.hostname)), "{out}");
        assert_eq!(out.contains("hosts"), !host_network, "{out}");
        let upper = rt.layout().layer_dir(&id).join("upper");
        let written: Vec<_> =
            std::fs::read_dir(&upper).unwrap().flatten().map(|e| e.path()).collect();
        assert!(written.is_empty(), "host_network {host_network}: written {written:?}");
        rt.remove_pod_sandbox(&sb).await.unwrap();
    }
}
